-- gift_claim.lua: the sender-slot step of a gift (see feeds/shop/gifts.py): claim one of the
-- sender's sends in the campaign for this gift, under the campaign's limit. A claim is a
-- field of gift_claims:{sender} (gift_id -> campaign_id) counted in gift_sends:{sender},
-- so a redelivered gift finds its claim and claims nothing twice.
-- ARGV 8..: gift_id, sender_id, campaign_id, send_limit
-- Returns 'ok' (claimed, now or before) or 'send_limit'.
local gift, sender, campaign, limit = ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local claims, sends = key('gift_claims', sender), key('gift_sends', sender)
if redis.call('HEXISTS', claims, gift) == 1 then return 'ok' end
if (tonumber(redis.call('HGET', sends, campaign)) or 0) >= limit then return 'send_limit' end
redis.call('HSET', claims, gift, campaign)
redis.call('HINCRBY', sends, campaign, 1)
return 'ok'
