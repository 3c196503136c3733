-- backfill.lua: on user's slot, push target's content read by the store into user's
-- feeds: after a follow (or for rebuild-feed) target's recent posts and reposts (lib.lua,
-- backfill); after an unblock or unmute what that ends hiding (lib.lua, restore).
-- ARGV 8..: user_id, target_id, mode ('backfill' or 'restore'), row, ...
-- The rows: np, np times post_id, ts (target's recent posts); nr, nr times post_id,
-- recent_reposts score, post author ('' if unknown); no, no times post_id, reposter_id,
-- repost time, recent_reposts score (restore: reposts of target's recent posts).
local user, target, mode = ARGV[8], ARGV[9], ARGV[10]

local i = 11
local function rows(width)
  local n, out = tonumber(ARGV[i]), {}
  for j = i + 1, i + width * n, width do
    local row = {}
    for w = 0, width - 1 do row[w + 1] = ARGV[j + w] end
    out[#out + 1] = row
  end
  i = i + 1 + width * n
  return out
end
local posts, reposts, others = rows(2), rows(3), rows(4)
if mode == 'restore' then
  restore(user, target, posts, reposts, others)
else
  backfill(user, target, posts, reposts)
end
return 1
