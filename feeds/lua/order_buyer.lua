-- order_buyer.lua: the buyer-slot step of an order event: the order in the buyer's order
-- center at its time (a purchase's time wins; a status event only adds it if absent) and,
-- for a purchase, the product among those the buyer bought.
-- ARGV 8..: buyer_id, order_id, ts, purchase ('1', or '0' for a status event), product_id
local buyer, order, ts, purchase, product = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if purchase == '1' then
  redis.call('ZADD', key('orders', buyer), ts, order)
  redis.call('SADD', key('bought', buyer), product)
else
  redis.call('ZADD', key('orders', buyer), 'NX', ts, order)
end
return 1
