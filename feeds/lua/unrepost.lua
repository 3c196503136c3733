-- unrepost.lua: the origin step of an unrepost, on the post's slot: forget the reposter
-- among the post's reposters and its comment. The store then takes the post out of the
-- reposter's recent list and withdraws the attribution from the reposter's followers'
-- feeds (deliver.lua, 'withdraw'), given the post's facts this returns.
-- ARGV 8..: post_id, reposter_id
-- Returns the post's author, time and deletion mark ({a, ts, del}, nil when unknown).
local post, reposter = ARGV[8], ARGV[9]

redis.call('ZREM', key('reposters', post), reposter)
redis.call('HDEL', key('comments', post), reposter)
return post_facts(post)
