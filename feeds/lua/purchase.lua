-- purchase.lua: create (or complete) an order in the buyer's order center and credit the
-- creators it came through: the author of via_post and the reposter of via_repost. A
-- creator not known yet (its post or repost not handled yet) is credited when it is.
-- ARGV 8..: order_id, buyer_id, product_id, seller_id, amount_cents, currency,
--           via_post_id ('' if none), via_repost_id ('' if none), ts
-- Returns the order's status.
local order, buyer, product, seller = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local amount, currency, via_post, via_repost, ts = ARGV[12], ARGV[13], ARGV[14], ARGV[15],
    ARGV[16]

local o = key('order', order)
redis.call('HSET', o, 'b', buyer, 'prod', product, 'seller', seller, 'amt', amount,
  'cur', currency, 'ts', ts, 'bought', '1')
redis.call('ZADD', key('orders', buyer), ts, order)
if via_repost ~= '' then
  redis.call('HSET', o, 'vr', via_repost)
  local repost = redis.call('HMGET', key('repost', via_repost), 'u', 'p')
  if repost[1] then
    redis.call('HSET', o, 'cr_repost', repost[1])
    if via_post == '' then via_post = repost[2] end
  else
    redis.call('SADD', key('awaiting_repost', via_repost), order)
  end
end
if via_post ~= '' then
  redis.call('HSET', o, 'vp', via_post)
  local author = author_of(via_post)
  if author then
    redis.call('HSET', o, 'cr_post', author)
  else
    redis.call('SADD', key('awaiting_post', via_post), order)
  end
end
derive_status(order)
reconcile_credit(order)
return redis.call('HGET', o, 'status')
