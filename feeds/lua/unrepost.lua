-- unrepost.lua: withdraw a reposter's attribution of a post from their followers' feeds,
-- dropping entries for which it was the only reason.
-- ARGV: prefix, first, cursor, count, buckets, post_id, reposter_id
-- Returns the next follower cursor ('0' when done).
local prefix, first, cursor, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local buckets, post, reposter = tonumber(ARGV[5]), ARGV[6], ARGV[7]

if first == '1' then
  redis.call('ZREM', key(prefix, 'reposters', post), reposter)
  redis.call('HDEL', key(prefix, 'comments', post), reposter)
  redis.call('ZREM', key(prefix, 'recent_reposts', reposter), post)
end
local author = redis.call('HGET', key(prefix, 'post', post), 'a')
local b = bucket_of(post, buckets)
return each_follower(prefix, reposter, cursor, count, function(follower)
  unpush_via(prefix, follower, post, b, reposter, author)
end)
