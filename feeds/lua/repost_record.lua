-- repost_record.lua: who made a repost, on the repost's slot, and the orders waiting to
-- credit it (deleted post or not).
-- ARGV 8..: repost_id, reposter_id, post_id, post_author_id
local repost_id, reposter, post, author = ARGV[8], ARGV[9], ARGV[10], ARGV[11]

redis.call('HSET', key('repost', repost_id), 'u', reposter, 'p', post)
settle_awaiting('repost', repost_id, reposter, post, author)
return 'ok'
