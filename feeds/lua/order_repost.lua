-- order_repost.lua: the repost-slot step of an order: who reposted via_repost and which
-- post it was; when the repost is not recorded yet the order waits for it in
-- awaiting_repost:{repost} (read and wait in one step, so a repost recorded meanwhile
-- finds the order).
-- ARGV 8..: repost_id, order_id
-- Returns {reposter, post} (nil, nil while unknown).
local repost = redis.call('HMGET', key('repost', ARGV[8]), 'u', 'p')
if not repost[1] then redis.call('SADD', key('awaiting_repost', ARGV[8]), ARGV[9]) end
return repost
