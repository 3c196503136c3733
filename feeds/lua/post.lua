-- post.lua: record a post and push it into its author's followers' feeds.
-- ARGV: prefix, first ('1' on the first call of an event), cursor, count, cap, recent_n,
--       post_id, author_id, ts, visibility, text, media_url
-- Returns the next follower cursor ('0' when done), or 'skip' for a deleted post.
local prefix, first, cursor, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local cap, recent_n = tonumber(ARGV[5]), tonumber(ARGV[6])
local post, author, ts = ARGV[7], ARGV[8], ARGV[9]

if is_deleted(prefix, post) then return 'skip' end
if first == '1' then
  local record = key(prefix, 'post', post)
  redis.call('HSET', record, 'a', author, 'ts', ts, 'vis', ARGV[10])
  if ARGV[11] ~= '' then redis.call('HSET', record, 'text', ARGV[11]) end
  if ARGV[12] ~= '' then redis.call('HSET', record, 'media', ARGV[12]) end
  local recent = key(prefix, 'recent', author)
  redis.call('ZADD', recent, ts, post)
  trim_recent(recent, recent_n)
end
return each_follower(prefix, author, cursor, count, function(follower)
  push(prefix, follower, post, ts, '', cap)
end)
