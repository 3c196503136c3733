-- follow.lua: the state step of a follow or unfollow, on the follower's slot: the latest
-- follow or unfollow by event time wins, whatever the arrival order (lib.lua,
-- set_follow). The store then mirrors the answer in followers:{followee} and either
-- backfills the followee's recent posts and reposts (backfill.lua) or, when not
-- following, takes them out of the follower's feeds (purge.lua).
-- ARGV 8..: follower_id, followee_id, ts, on ('1' follow, '0' unfollow)
-- Returns 1 when the follower follows the followee now, else 0.
local follower, followee, ts, on = ARGV[8], ARGV[9], ARGV[10], ARGV[11] == '1'

return set_follow(follower, followee, ts, on) and 1 or 0
