-- decide_post.lua: the post-slot step of a repost decision (see feeds/repost_decisions.py).
-- A kept decision is returned as it is; otherwise the depth of the repost it came
-- through, whether the post is followers-only, and the brake attempt: recorded in
-- brake:{post} (ZADD of the repost id: idempotent) and the other attempts counted in
-- (ts - window, ts]. A repost refused at the door records its attempt too (windows count
-- attempts whatever their decision), so a late suspension leaves the counts as they are.
-- ARGV 8..: post_id, repost_id, via_repost_id ('' if none), ts, brake_window,
--           door ('' or the reason it was refused at the door)
-- Returns '=decision|depth|reasons' when decided before, else
-- 'via_depth|followers_only|brake_others' (via_depth '' when via is none or undecided;
-- the last two '' for a door refusal).
local post, repost, via, ts = ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local brake_window, door = tonumber(ARGV[12]), ARGV[13] or ''

local decided = key('decided', post)
local known = redis.call('HGET', decided, repost)
if known then return '=' .. known end

local via_depth = ''
if via ~= '' then
  local previous = redis.call('HGET', decided, via)
  if previous then via_depth = string.match(previous, '^[^|]*|(%d+)') end
end
local brake = key('brake', post)
redis.call('ZADD', brake, ts, repost)
redis.call('ZREMRANGEBYSCORE', brake, '-inf', '(' .. (ts - 2 * brake_window))
if door ~= '' then return via_depth .. '||' end

local followers = redis.call('HGET', key('post', post), 'vis') == 'followers' and '1' or '0'
local others = redis.call('ZCOUNT', brake, '(' .. (ts - brake_window), ts) - 1
return via_depth .. '|' .. followers .. '|' .. others
