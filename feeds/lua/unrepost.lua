-- unrepost.lua: withdraw a reposter's attribution of a post from their followers' feeds,
-- dropping entries for which it was the only reason and re-ranking For You entries.
-- ARGV 8..: first, cursor, post_id, reposter_id
-- Returns the next follower cursor ('0' when done).
local first, cursor, post, reposter = ARGV[8], ARGV[9], ARGV[10], ARGV[11]

if first == '1' then
  redis.call('ZREM', key('reposters', post), reposter)
  redis.call('HDEL', key('comments', post), reposter)
  redis.call('ZREM', key('recent_reposts', reposter), post)
end
local b = bucket_of(post)
return each_follower(reposter, cursor, function(follower)
  unpush_via(follower, post, b, reposter)
end)
