-- repost.lua: the origin step of a repost, on the post's slot: the post's author (for
-- attribution, deleted or not) and the orders waiting for the post; unless the post was
-- deleted, the reposter's time among the post's reposters (ZADD GT) and comment. The
-- store then records the repost (repost_record.lua, the repost's slot), adds it to the
-- reposter's recent list (the reposter's slot), hands the waiting orders to the order
-- steps (feeds/shop/order_steps.py) and delivers it (deliver.lua, 'repost').
-- ARGV 8..: post_id, post_author_id, reposter_id, ts, comment
-- Returns {'skip' for a deleted post, else 'ok'; then the orders waiting in
-- awaiting_post:{post}}.
local post, author, reposter, ts, comment = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]

-- A purchase credits a repost whether or not its post was deleted since, so a delete
-- read before the repost changes nothing here.
redis.call('HSETNX', key('post', post), 'a', author)
local out = { 'ok' }
for _, order in ipairs(redis.call('SMEMBERS', key('awaiting_post', post))) do
  out[#out + 1] = order
end
if is_deleted(post) then
  out[1] = 'skip'
  return out
end
redis.call('ZADD', key('reposters', post), 'GT', ts, reposter)
if comment ~= '' then
  redis.call('HSET', key('comments', post), reposter, comment)
else
  redis.call('HDEL', key('comments', post), reposter)
end
return out
