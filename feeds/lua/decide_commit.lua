-- decide_commit.lua: the commit point of a repost decision, on the post's slot: the first
-- decision kept for the repost wins (HSETNX), so a redelivery or a racing copy returns it.
-- ARGV 8..: post_id, repost_id, decision ('decision|depth|reasons')
-- Returns the decision kept.
local decided = key('decided', ARGV[8])
redis.call('HSETNX', decided, ARGV[9], ARGV[10])
return redis.call('HGET', decided, ARGV[9])
