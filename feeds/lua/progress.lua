-- progress.lua: raise partitions' progress (never lower it), in one read and one write.
-- ARGV 8..: field, ts, ... (pairs: a partition's field, its event time)
local progress = key('progress', 'order')
local fields = {}
for i = 8, #ARGV, 2 do fields[#fields + 1] = ARGV[i] end
if #fields == 0 then return 1 end
local current = redis.call('HMGET', progress, unpack(fields))
local raised = {}
for n, field in ipairs(fields) do
  local ts = ARGV[6 + 2 * n + 1]
  if not current[n] or tonumber(current[n]) < tonumber(ts) then
    raised[#raised + 1] = field
    raised[#raised + 1] = ts
  end
end
if #raised > 0 then redis.call('HSET', progress, unpack(raised)) end
return 1
