-- Reference: the single script the repost decision steps replaced (feeds/repost_decisions.py);
-- tests/test_step_equivalence.py checks the steps decide exactly as it did (its door refusals
-- record their attempts too, as the steps now do).
-- decide.lua: the one decision for a repost, made once and kept, so a redelivery or a
-- replay over the same Redis returns it unchanged. Windows are of event time and count
-- attempts (whatever their decision), so a decision depends on the log, not on speed.
-- ARGV 8..: post_id, repost_id, reposter_id, via_repost_id ('' if none), ts, has_comment,
--           frequently_forwarded_depth, rate_max, rate_window, forwarded_max,
--           forwarded_window, brake_reposts, brake_window, friction ('1' on),
--           door ('' or the reason it was refused at the door: suspended, author_suspended)
-- Returns 'decision|depth|reason,reason'.
local post, repost, user, via = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local ts, has_comment = tonumber(ARGV[12]), ARGV[13] == '1'
local ff_depth, rate_max, rate_window = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
local fwd_max, fwd_window = tonumber(ARGV[17]), tonumber(ARGV[18])
local brake_max, brake_window, friction = tonumber(ARGV[19]), tonumber(ARGV[20]), ARGV[21] == '1'
local door = ARGV[22] or ''

local decided = key('decided', post)
local known = redis.call('HGET', decided, repost)
if known then return known end

-- Depth: 1 for a repost of the post itself, depth(via) + 1 through another repost (reposts
-- of one post share a partition, so via was decided first).
local depth = 1
if via ~= '' then
  local previous = redis.call('HGET', decided, via)
  if previous then depth = tonumber(string.match(previous, '^[^|]*|(%d+)')) + 1 end
end

-- others_in_window: record this attempt in zset k and count the other attempts in
-- (ts - window, ts]; forget attempts far older than any window needs.
local function others_in_window(k, window)
  redis.call('ZADD', k, ts, repost)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. (ts - 2 * window))
  return redis.call('ZCOUNT', k, '(' .. (ts - window), ts) - 1
end

-- Refused at the door: the attempt counts in every window like any other.
if door ~= '' then
  others_in_window(key('attempts', user), rate_window)
  if depth >= ff_depth then others_in_window(key('forwarded_attempts', user), fwd_window) end
  others_in_window(key('brake', post), brake_window)
  local value = 'refused|' .. depth .. '|' .. door
  redis.call('HSET', decided, repost, value)
  return value
end

local reasons, refused, limited, restricted = {}, false, false, false
if redis.call('HGET', key('post', post), 'vis') == 'followers' then
  refused = true
  reasons[#reasons + 1] = 'followers_only'
end
if others_in_window(key('attempts', user), rate_window) >= rate_max then
  limited = true
  reasons[#reasons + 1] = 'user_rate'
end
if depth >= ff_depth then
  restricted = true
  reasons[#reasons + 1] = 'forwarded_many_times'
  if others_in_window(key('forwarded_attempts', user), fwd_window) >= fwd_max then
    limited = true
    reasons[#reasons + 1] = 'forwarded_hourly'
  end
end
if others_in_window(key('brake', post), brake_window) >= brake_max then
  restricted = true
  reasons[#reasons + 1] = 'virality_brake'
end
if friction and not has_comment then
  restricted = true
  reasons[#reasons + 1] = 'no_comment'
end

local decision = 'delivered'
if refused then
  decision = 'refused'
elseif limited then
  decision = 'rate_limited'
elseif restricted then
  decision = 'restricted'
end
local value = decision .. '|' .. depth .. '|' .. table.concat(reasons, ',')
redis.call('HSET', decided, repost, value)
return value
