-- decide_user.lua: the reposter-slot step of a repost decision: the attempt recorded in
-- the reposter's rate window (and, for a repost forwarded many times, in the forwarded
-- window), each a ZADD of the repost id (idempotent), and the other attempts counted in
-- (ts - window, ts].
-- ARGV 8..: reposter_id, repost_id, ts, rate_window, forwarded ('1': count it too),
--           forwarded_window
-- Returns 'rate_others|forwarded_others' (the second '' when not forwarded).
local user, repost, ts = ARGV[8], ARGV[9], tonumber(ARGV[10])
local rate_window, forwarded, fwd_window = tonumber(ARGV[11]), ARGV[12] == '1', tonumber(ARGV[13])

local function others_in_window(k, window)
  redis.call('ZADD', k, ts, repost)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. (ts - 2 * window))
  return redis.call('ZCOUNT', k, '(' .. (ts - window), ts) - 1
end

local rate = others_in_window(key('attempts', user), rate_window)
local fwd = ''
if forwarded then fwd = others_in_window(key('forwarded_attempts', user), fwd_window) end
return rate .. '|' .. fwd
