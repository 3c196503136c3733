-- unpush.lua: remove a post from both feeds of one chunk of source's followers; after
-- the last source, purge the post's reposters and comments.
-- ARGV 8..: cursor, post_id, source_id, last ('1' for the last source)
-- Returns the next follower cursor ('0' when done).
local cursor, post, source, last = ARGV[8], ARGV[9], ARGV[10], ARGV[11]

local b = bucket_of(post)
local next_cursor = each_follower(source, cursor, function(follower)
  unpush(follower, post, b)
end)
if next_cursor == '0' and last == '1' then
  redis.call('DEL', key('reposters', post), key('comments', post))
end
return next_cursor
