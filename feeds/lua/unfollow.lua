-- unfollow.lua: record that follower no longer follows followee (the latest follow or
-- unfollow by event time wins, whatever the arrival order) and, unless a later follow
-- won, take the followee's posts and reposts out of the follower's feeds: entries another
-- followee reposted stay, re-placed at their latest remaining reason.
-- ARGV 8..: follower_id, followee_id, ts
local follower, followee, ts = ARGV[8], ARGV[9], ARGV[10]

if not set_follow(follower, followee, ts, false) then
  purge(follower, followee, function() return true end, false)
end
return 1
