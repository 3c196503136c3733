-- order_purchase.lua: the order-slot step of a purchase (see feeds/shop/order_steps.py): record
-- the order in order:{order} and derive its status from every status event received.
-- ARGV 8..: order_id, buyer_id, product_id, seller_id, amount_cents, currency,
--           via_post_id ('' if none), via_repost_id ('' if none), ts
-- Returns the order's status.
local order, buyer, product, seller = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local amount, currency, via_post, via_repost, ts = ARGV[12], ARGV[13], ARGV[14], ARGV[15],
    ARGV[16]

local o = key('order', order)
redis.call('HSET', o, 'b', buyer, 'prod', product, 'seller', seller, 'amt', amount,
  'cur', currency, 'ts', ts, 'bought', '1')
if via_repost ~= '' then redis.call('HSET', o, 'vr', via_repost) end
if via_post ~= '' then redis.call('HSET', o, 'vp', via_post) end
derive_status(order)
return redis.call('HGET', o, 'status')
