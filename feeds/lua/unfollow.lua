-- unfollow.lua: record that follower no longer follows followee and take the followee's
-- posts and reposts out of the follower's feeds (entries another followee reposted stay).
-- ARGV 8..: follower_id, followee_id
local follower, followee = ARGV[8], ARGV[9]

redis.call('SREM', key('following', follower), followee)
redis.call('SREM', key('followers', followee), follower)
purge(follower, followee, false)
return 1
