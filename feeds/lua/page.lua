-- page.lua: the top of every bucket of a feed, for the caller to merge.
-- (Standalone: no lib.lua.)
-- KEYS: bucket, ... (the n zset buckets 0..n-1, then their n attribution hashes)
-- ARGV: max_score ('+inf' or a score; inclusive), limit
-- From each bucket: up to limit entries at or below max_score, highest first, plus every
-- entry tied at max_score (the caller drops those at or before its cursor).
-- Returns a flat list: post_id, score, attribution-or-false, ...
local max, limit = ARGV[1], tonumber(ARGV[2])
local n = #KEYS / 2
local out = {}
for b = 1, n do
  local take = limit
  if max ~= '+inf' then take = take + redis.call('ZCOUNT', KEYS[b], max, max) end
  local rows = redis.call('ZRANGE', KEYS[b], max, '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, take,
    'WITHSCORES')
  for i = 1, #rows, 2 do
    out[#out + 1] = rows[i]
    out[#out + 1] = rows[i + 1]
    out[#out + 1] = redis.call('HGET', KEYS[n + b], rows[i])
  end
end
return out
