-- page.lua: one page of a feed, newest first, with each entry's reposters.
-- KEYS: feed, via.  ARGV: max_score ('+inf' or a score; inclusive), limit
-- Entries at exactly max_score are all returned (the caller drops those before its
-- cursor), so the page holds limit entries past the cursor when the feed has them.
-- Returns a flat list: post_id, score, reposters-or-false, ...
local max, limit = ARGV[1], tonumber(ARGV[2])
if max ~= '+inf' then limit = limit + redis.call('ZCOUNT', KEYS[1], max, max) end
local rows = redis.call('ZRANGE', KEYS[1], max, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, limit,
  'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  out[#out + 1] = rows[i]
  out[#out + 1] = rows[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], rows[i])
end
return out
