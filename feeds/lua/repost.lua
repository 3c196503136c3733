-- repost.lua: record a repost and push the original post, attributed to the reposter,
-- into the reposter's followers' feeds (never into the post author's own feed).
-- ARGV: prefix, first, cursor, count, buckets, bucket_cap, recent_n, post_id,
--       post_author_id, reposter_id, ts, comment
-- Returns the next follower cursor ('0' when done), or 'skip' for a deleted post.
local prefix, first, cursor, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local buckets, cap, recent_n = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local post, author, reposter, ts, comment = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]

if is_deleted(prefix, post) then return 'skip' end
if first == '1' then
  redis.call('HSETNX', key(prefix, 'post', post), 'a', author)
  redis.call('ZADD', key(prefix, 'reposters', post), 'GT', ts, reposter)
  if comment ~= '' then
    redis.call('HSET', key(prefix, 'comments', post), reposter, comment)
  else
    redis.call('HDEL', key(prefix, 'comments', post), reposter)
  end
  local recent = key(prefix, 'recent_reposts', reposter)
  redis.call('ZADD', recent, 'GT', ts, post)
  trim_recent(recent, recent_n)
end
local b = bucket_of(post, buckets)
return each_follower(prefix, reposter, cursor, count, function(follower)
  if follower ~= author then push(prefix, follower, post, b, ts, reposter, cap) end
end)
