-- gift_commit.lua: the gift-slot commit point of a gift: the outcome is written once; a
-- gift decided before keeps its first outcome, which is returned.
-- ARGV 8..: gift_id, sender_id, recipient_id, offer_id, campaign_id, message, code, ts,
--           decision, reasons ('a,b' or '')
-- Returns 'decision|reason,reason' as kept.
local g = key('gift', ARGV[8])
local known = redis.call('HMGET', g, 'decision', 'reasons')
if known[1] then return known[1] .. '|' .. (known[2] or '') end
redis.call('HSET', g, 'sender', ARGV[9], 'recipient', ARGV[10], 'offer', ARGV[11],
  'campaign', ARGV[12], 'message', ARGV[13], 'code', ARGV[14], 'ts', ARGV[15],
  'decision', ARGV[16], 'reasons', ARGV[17])
return ARGV[16] .. '|' .. ARGV[17]
