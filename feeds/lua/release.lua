-- release.lua: the parked events (reposts, gifts) whose event time the watermark has passed,
-- oldest first (ties by event id). The watermark is the lowest progress of the expected
-- partitions (none released until every one of them has reported), or forced.
-- ARGV 8..: limit, forced (the watermark, '' to compute it), field (of a partition), ...
-- Returns {watermark or false, event_id, record, event_id, record, ...}.
local limit, forced = tonumber(ARGV[8]), ARGV[9]
local watermark = nil
if forced ~= '' then
  watermark = forced
else
  if #ARGV < 10 then return { false } end
  local fields = {}
  for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
  for _, value in ipairs(redis.call('HMGET', key('progress', 'order'), unpack(fields))) do
    if not value then return { false } end
    value = tonumber(value)
    if not watermark or value < watermark then watermark = value end
  end
end
local out = { tostring(watermark) }
local ids = redis.call('ZRANGE', key('parked', 'order'), '-inf', watermark, 'BYSCORE',
  'LIMIT', 0, limit)
if #ids == 0 then return out end
local records = redis.call('HMGET', key('parked_events', 'order'), unpack(ids))
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = records[i] or ''
end
return out
