-- follow.lua: record that follower follows followee (the latest follow or unfollow by event
-- time wins, whatever the arrival order) and, while they do, backfill the followee's
-- recent posts and reposts into the follower's feeds as the live fan-out would have
-- delivered them (lib.lua, backfill).
-- ARGV 8..: follower_id, followee_id, ts (event time; '' to backfill without recording a
--           follow, as rebuild-feed does)
local follower, followee, ts = ARGV[8], ARGV[9], ARGV[10]

if ts ~= '' and not set_follow(follower, followee, ts, true) then
  -- an unfollow later in event time already won: keep its effect
  purge(follower, followee, function() return true end, false)
  return 1
end
backfill(follower, followee, 0)
return 1
