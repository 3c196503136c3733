-- post.lua: record a post and push it into its author's followers' feeds.
-- ARGV: prefix, first ('1' on the first call of an event), cursor, count, buckets,
--       bucket_cap, recent_n, post_id, author_id, ts, visibility, text, media_url
-- Returns the next follower cursor ('0' when done), or 'skip' for a deleted post.
local prefix, first, cursor, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local buckets, cap, recent_n = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local post, author, ts = ARGV[8], ARGV[9], ARGV[10]

if is_deleted(prefix, post) then return 'skip' end
if first == '1' then
  local record = key(prefix, 'post', post)
  redis.call('HSET', record, 'a', author, 'ts', ts, 'vis', ARGV[11])
  if ARGV[12] ~= '' then redis.call('HSET', record, 'text', ARGV[12]) end
  if ARGV[13] ~= '' then redis.call('HSET', record, 'media', ARGV[13]) end
  local recent = key(prefix, 'recent', author)
  redis.call('ZADD', recent, ts, post)
  trim_recent(recent, recent_n)
end
local b = bucket_of(post, buckets)
return each_follower(prefix, author, cursor, count, function(follower)
  push(prefix, follower, post, b, ts, '', cap)
end)
