-- order_status.lua: record one status event of an order and recompute its status and
-- history from all of them (late, repeated and out-of-order events give the same result
-- as in-order ones); a cancel or refund takes back the creators' credit.
-- ARGV 8..: order_id, buyer_id, status, seq (-1 if none), ts, dedup_id (the same for
--           repeats of one event)
-- Returns the order's status.
local order, buyer, status, seq, ts, dedup = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12],
    ARGV[13]

local o = key('order', order)
redis.call('HSETNX', o, 'b', buyer)
redis.call('ZADD', key('orders', buyer), 'NX', ts, order)
-- A repeat keeps the earliest time, so arrival order does not matter.
local known = redis.call('HGET', o, 'ev:' .. dedup)
if not known or tonumber(string.match(known, '(%d+)$')) > tonumber(ts) then
  redis.call('HSET', o, 'ev:' .. dedup, status .. '|' .. seq .. '|' .. ts)
end
derive_status(order)
reconcile_credit(order)
return redis.call('HGET', o, 'status')
