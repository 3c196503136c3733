-- tag.lua: record the products a post tags; the orders that named the post before its
-- tags were known are returned, to be reconciled by the caller (feeds/shop/order_steps.py),
-- which then takes them out of awaiting_tags:{post}.
-- KEYS: none (key names are built from the prefix in ARGV[1], as in every feed script).
-- ARGV 8..: post_id, author_id, product_id, ... (none for a post without tags)
-- Writes products:{post} (set), post:{post} fields 'a' (if unknown) and 'tg' (how many
-- products the post tags: also the mark that its tags are known).
-- Returns {number of products the post tags, waiting order...}.
local post, author = ARGV[8], ARGV[9]
local record, products = key('post', post), key('products', post)
redis.call('HSETNX', record, 'a', author)
if #ARGV > 9 then redis.call('SADD', products, unpack(ARGV, 10)) end
local n = redis.call('SCARD', products)
redis.call('HSET', record, 'tg', n)
local out = { n }
for _, order in ipairs(redis.call('SMEMBERS', key('awaiting_tags', post))) do
  out[#out + 1] = order
end
return out
