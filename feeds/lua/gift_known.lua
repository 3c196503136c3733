-- gift_known.lua: the first gift-slot step of a gift: the outcome of a gift decided before.
-- ARGV 8..: gift_id
-- Returns 'decision|reason,reason', or '' when the gift is not decided yet.
local known = redis.call('HMGET', key('gift', ARGV[8]), 'decision', 'reasons')
if known[1] then return known[1] .. '|' .. (known[2] or '') end
return ''
