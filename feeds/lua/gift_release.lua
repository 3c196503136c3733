-- gift_release.lua: the sender-slot step that gives back a gift's claim (its offer ran
-- out of codes): the send no longer counts. Releasing twice changes nothing.
-- ARGV 8..: gift_id, sender_id
-- Returns 1 if a claim was released, else 0.
local gift, sender = ARGV[8], ARGV[9]
local claims = key('gift_claims', sender)
local campaign = redis.call('HGET', claims, gift)
if not campaign then return 0 end
redis.call('HDEL', claims, gift)
if redis.call('HINCRBY', key('gift_sends', sender), campaign, -1) <= 0 then
  redis.call('HDEL', key('gift_sends', sender), campaign)
end
return 1
