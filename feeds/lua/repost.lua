-- repost.lua: record a repost and push the original post, attributed to the reposter,
-- into the reposter's followers' Following feeds and, when for_you is '1', their For You
-- feeds. Never into the post author's own feeds, nor of those hidden from the author or
-- the reposter at the repost's time (blocks count both ways, mutes one way). label '1'
-- marks the Following entries forwarded_many_times.
-- ARGV 8..: first, cursor, post_id, post_author_id, reposter_id, ts, comment, for_you, label,
--           repost_id
-- Returns 'cursor|n': the next follower cursor ('0' when done) and the followers pushed
-- to, or 'skip' for a deleted post (after recording the repost for attribution).
local first, cursor = ARGV[8], ARGV[9]
local post, author, reposter, ts, comment = ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14]

if first == '1' then
  -- Attribution first, deleted or not: who made this repost, and orders waiting to credit
  -- it or the post (a purchase credits a repost whether or not its post was deleted
  -- since, so a delete read before the repost changes nothing here).
  local repost_id = ARGV[17]
  redis.call('HSETNX', key('post', post), 'a', author)
  redis.call('HSET', key('repost', repost_id), 'u', reposter, 'p', post)
  settle_awaiting('post', post, author)
  settle_awaiting('repost', repost_id, reposter, post, author)
end
if is_deleted(post) then return 'skip' end
if first == '1' then
  redis.call('ZADD', key('reposters', post), 'GT', ts, reposter)
  if comment ~= '' then
    redis.call('HSET', key('comments', post), reposter, comment)
  else
    redis.call('HDEL', key('comments', post), reposter)
  end
  -- The score's fraction remembers how the repost was delivered, for follow backfill.
  local recent = key('recent_reposts', reposter)
  redis.call('ZADD', recent, 'GT', recent_score(ts, ARGV[15] == '1', ARGV[16] == '1'), post)
  trim_recent(recent)
end
local b = bucket_of(post)
local hidden = hidden_from({ author, reposter }, ts)
local mark = ARGV[16] == '1' and LABEL_MARK or ''
local alone = ARGV[15] == '1' and for_you_score(post, reposter)
local n = 0
local next_cursor = each_follower(reposter, cursor, function(follower)
  if follower ~= author and not hidden(follower) then
    push(follower, post, b, ts, reposter, mark)
    if alone then push_for_you(follower, post, b, reposter, alone) end
    n = n + 1
  end
end)
return next_cursor .. '|' .. n
