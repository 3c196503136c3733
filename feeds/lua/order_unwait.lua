-- order_unwait.lua: take settled orders out of a waiting set (awaiting_post,
-- awaiting_repost or awaiting_tags of one post or repost) once they were reconciled.
-- ARGV 8..: kind ('awaiting_post' and so on), id, order_id, ...
return redis.call('SREM', key(ARGV[8], ARGV[9]), unpack(ARGV, 10))
