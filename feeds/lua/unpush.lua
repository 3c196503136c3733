-- unpush.lua: remove a post from the feeds of one chunk of source's followers; after the
-- last source, purge the post's reposters and comments.
-- ARGV: prefix, cursor, count, post_id, source_id, last ('1' for the last source)
-- Returns the next follower cursor ('0' when done).
local prefix, cursor, count, post, source = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]

local next_cursor = each_follower(prefix, source, cursor, count, function(follower)
  unpush(prefix, follower, post)
end)
if next_cursor == '0' and ARGV[6] == '1' then
  redis.call('DEL', key(prefix, 'reposters', post), key(prefix, 'comments', post))
end
return next_cursor
