-- progress.lua: raise partitions' progress (never lower it).
-- ARGV 8..: field, ts, ... (pairs: a partition's field, its event time)
local progress = key('progress', 'order')
for i = 8, #ARGV, 2 do
  local current = redis.call('HGET', progress, ARGV[i])
  if not current or tonumber(current) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', progress, ARGV[i], ARGV[i + 1])
  end
end
return 1
