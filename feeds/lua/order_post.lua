-- order_post.lua: the post-slot step of an order: the author of via_post (or the order
-- waits in awaiting_post:{post}) and, for an active order, whether the post tags its
-- product (or the order waits in awaiting_tags:{post} until its tags are known; an
-- inactive order leaves that set, so who waits there does not depend on the order of
-- arrival).
-- ARGV 8..: post_id, order_id, product_id ('' when conversions are not asked)
-- Returns {author or '', tagged: '1', '0', or '' when the tags are unknown or not asked}.
local post, order, product = ARGV[8], ARGV[9], ARGV[10]
local record = key('post', post)
local found = redis.call('HMGET', record, 'a', 'tg')
if not found[1] then redis.call('SADD', key('awaiting_post', post), order) end
local tagged = ''
if product ~= '' then
  if found[2] then
    tagged = tostring(redis.call('SISMEMBER', key('products', post), product))
  else
    redis.call('SADD', key('awaiting_tags', post), order)
  end
else
  -- no longer active (cancelled, refunded): nothing to wait for, whenever it waited
  redis.call('SREM', key('awaiting_tags', post), order)
end
return { found[1] or '', tagged }
