-- follow.lua: record that follower follows followee and backfill the followee's recent
-- posts and reposts into the follower's feed.
-- ARGV: prefix, buckets, bucket_cap, follower_id, followee_id
local prefix, buckets, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local follower, followee = ARGV[4], ARGV[5]

redis.call('SADD', key(prefix, 'following', follower), followee)
redis.call('SADD', key(prefix, 'followers', followee), follower)
local posts = redis.call('ZRANGE', key(prefix, 'recent', followee), 0, -1, 'WITHSCORES')
for i = 1, #posts, 2 do
  push(prefix, follower, posts[i], bucket_of(posts[i], buckets), posts[i + 1], '', cap)
end
local reposts = redis.call('ZRANGE', key(prefix, 'recent_reposts', followee), 0, -1, 'WITHSCORES')
for i = 1, #reposts, 2 do
  local post = reposts[i]
  if redis.call('HGET', key(prefix, 'post', post), 'a') ~= follower then
    push(prefix, follower, post, bucket_of(post, buckets), reposts[i + 1], followee, cap)
  end
end
return 1
