-- purge.lua: on user's slot, take target's reasons out of user's feeds and re-place what
-- they touched (lib.lua, purge): after an unfollow every reason of target's (value ''),
-- after a block or mute (authored '1') those hidden by the pair's value 'on|off'.
-- ARGV 8..: user_id, target_id, authored, value, n, post_id, author, ts, deleted, ...
-- (then n times the facts of a post in user's feeds, '' for what the record lacks)
local user, target, authored, value = ARGV[8], ARGV[9], ARGV[10] == '1', ARGV[11]

local facts = {}
local n = tonumber(ARGV[12])
for i = 13, 12 + 4 * n, 4 do
  facts[ARGV[i]] = { ARGV[i + 1] ~= '' and ARGV[i + 1] or false,
    ARGV[i + 2] ~= '' and ARGV[i + 2] or false, ARGV[i + 3] ~= '' and ARGV[i + 3] or false }
end
local gone
if value == '' then
  gone = function() return true end
else
  gone = function(t) return hidden_at(value, t) end
end
purge(user, target, gone, authored, facts)
return 1
