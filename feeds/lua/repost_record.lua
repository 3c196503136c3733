-- repost_record.lua: who made a repost, on the repost's slot (deleted post or not), and
-- the orders waiting to credit it (awaiting_repost:{repost}), which the store hands to the
-- order steps (feeds/shop/order_steps.py). Recording and reading the waiting orders are
-- one step, so an order that waits meanwhile (order_repost.lua) is found either way.
-- ARGV 8..: repost_id, reposter_id, post_id, post_author_id
-- Returns {waiting order...}.
local repost_id, reposter, post = ARGV[8], ARGV[9], ARGV[10]

redis.call('HSET', key('repost', repost_id), 'u', reposter, 'p', post)
return redis.call('SMEMBERS', key('awaiting_repost', repost_id))
