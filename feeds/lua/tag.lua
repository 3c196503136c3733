-- tag.lua: record the products a post tags and count the conversions of orders that named
-- the post before it was recorded (see reconcile_conversion in lib_shop.lua).
-- KEYS: none (key names are built from the prefix in ARGV[1], as in every feed script).
-- ARGV 8..: post_id, author_id, product_id, ... (none for a post without tags)
-- Writes products:{post} (set), post:{post} fields 'a' (if unknown) and 'tg' (how many
-- products the post tags: also the mark that its tags are known); empties
-- awaiting_tags:{post}. Returns the number of products the post tags.
local post, author = ARGV[8], ARGV[9]
local record, products = key('post', post), key('products', post)
redis.call('HSETNX', record, 'a', author)
if #ARGV > 9 then redis.call('SADD', products, unpack(ARGV, 10)) end
local n = redis.call('SCARD', products)
redis.call('HSET', record, 'tg', n)
local waiting = key('awaiting_tags', post)
for _, order in ipairs(redis.call('SMEMBERS', waiting)) do reconcile_conversion(order) end
redis.call('DEL', waiting)
return n
