-- view.lua: a user looked at a product: keep it in their "Looked at" list at the time of
-- their latest view (ZADD GT: arrival order does not matter), with the clip it was seen in,
-- and keep the newest cap products.
-- KEYS: none (key names are built from the prefix in ARGV[1], as in every feed script).
-- ARGV 8..: user_id, product_id, ts, via_post_id ('' if none), via_repost_id ('' if none),
--           cap
-- Writes viewed:{user} (product -> latest view time) and viewed_via:{user} (product ->
-- 'via_post,via_repost' of that view; absent when it had none). Two views at the same
-- time keep the greater via value, so any arrival order gives the same result.
-- Returns 1 if the entry changed, else 0.
local user, product, ts = ARGV[8], ARGV[9], tonumber(ARGV[10])
local via, cap = ARGV[11] .. ',' .. ARGV[12], tonumber(ARGV[13])
local viewed, vias = key('viewed', user), key('viewed_via', user)
local old = redis.call('ZSCORE', viewed, product)
old = old and tonumber(old)
if old and (ts < old or (ts == old and via <= (redis.call('HGET', vias, product) or ','))) then
  return 0
end
redis.call('ZADD', viewed, 'GT', ts, product)
if via == ',' then
  redis.call('HDEL', vias, product)
else
  redis.call('HSET', vias, product, via)
end
local excess = redis.call('ZCARD', viewed) - cap
if excess > 0 then
  local gone = redis.call('ZRANGE', viewed, 0, excess - 1)
  redis.call('ZREM', viewed, unpack(gone))
  redis.call('HDEL', vias, unpack(gone))
end
return 1
