-- order_facts.lua: the order-slot read that starts reconciling an order's credits: what
-- its creators' steps need to know.
-- ARGV 8..: order_id
-- Returns {bought, status, product, via_post, via_repost, cr_post, cr_repost} (nil when
-- absent).
return redis.call('HMGET', key('order', ARGV[8]), 'bought', 'status', 'prod', 'vp', 'vr',
  'cr_post', 'cr_repost')
