-- post.lua: record a post and push it into its author's followers' Following feeds
-- (not those hidden from the author at the post's time: blocked or muted it, or blocked by it).
-- ARGV 8..: first ('1' on an event's first call), cursor, post_id, author_id, ts,
--           visibility, text, media_url
-- Returns 'cursor|n': the next follower cursor ('0' when done) and the followers pushed
-- to, or 'skip' for a deleted post.
local first, cursor = ARGV[8], ARGV[9]
local post, author, ts = ARGV[10], ARGV[11], ARGV[12]

if is_deleted(post) then return 'skip' end
if first == '1' then
  local record = key('post', post)
  redis.call('HSET', record, 'a', author, 'ts', ts, 'vis', ARGV[13])
  if ARGV[14] ~= '' then redis.call('HSET', record, 'text', ARGV[14]) end
  if ARGV[15] ~= '' then redis.call('HSET', record, 'media', ARGV[15]) end
  local recent = key('recent', author)
  redis.call('ZADD', recent, ts, post)
  trim_recent(recent)
  settle_awaiting('post', post, author)
end
local b = bucket_of(post)
local hidden = hidden_from({ author }, ts)
local n = 0
local next_cursor = each_follower(author, cursor, function(follower)
  if not hidden(follower) then
    push(follower, post, b, ts, '', '')
    n = n + 1
  end
end)
return next_cursor .. '|' .. n
