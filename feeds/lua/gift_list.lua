-- gift_list.lua: the user-slot step of an accepted gift: put it in the recipient's inbox
-- (kind 'gift_inbox') or the sender's sent list (kind 'gifts_sent') at its time, keeping
-- the newest cap. ZADD of the gift id: idempotent.
-- ARGV 8..: kind, user_id, gift_id, ts, cap
local list = key(ARGV[8], ARGV[9])
redis.call('ZADD', list, ARGV[11], ARGV[10])
redis.call('ZREMRANGEBYRANK', list, 0, -(tonumber(ARGV[12]) + 1))
return 1
