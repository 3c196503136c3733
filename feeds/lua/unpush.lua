-- unpush.lua: remove a post from the feeds of one chunk of source's followers; after the
-- last source, purge the post's reposters and comments.
-- ARGV: prefix, cursor, count, buckets, post_id, source_id, last ('1' for the last source)
-- Returns the next follower cursor ('0' when done).
local prefix, cursor, count, buckets = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local post, source = ARGV[5], ARGV[6]

local b = bucket_of(post, buckets)
local next_cursor = each_follower(prefix, source, cursor, count, function(follower)
  unpush(prefix, follower, post, b)
end)
if next_cursor == '0' and ARGV[7] == '1' then
  redis.call('DEL', key(prefix, 'reposters', post), key(prefix, 'comments', post))
end
return next_cursor
