#!lua flags=allow-cross-slot-keys
-- deliver.lua: the delivery step of a fan-out, on one node's share of a chunk of
-- followers (feeds/fanout.py groups followers by node: one group on a standalone Redis).
-- Each segment is one event's delivery to some followers:
--   'post':     push the post into their Following feeds at its time;
--   'repost':   push the post, attributed to the reposter at the repost's time, into
--               their Following feeds (labelled when flags holds 'l') and, when flags
--               holds 'f', their For You feeds; never into the author's own feeds;
--   'withdraw': take the reposter's attribution out of both of their feeds and re-place
--               the entries (the post's author and time given, flags 'd' when deleted);
--   'unpush':   take the post out of both of their feeds, whatever brought it there.
-- Pushes skip followers who no longer follow the source (an unfollow after the store read
-- the followers) or are hidden from the author or the reposter at that time: they block
-- or mute them, or are blocked by them. Both come from one read of the follower's pair
-- state (lib.lua, pair:{user}). The post's facts come in ARGV from the orchestrator, and
-- every key touched for a follower carries the follower's tag, so a call touches only its
-- followers' slots. It declares the first follower's feed bucket key (routing on a
-- cluster) or, after a refusal, every key of one slot; the flag lets it reach the other
-- slots of its node.
-- Inactive followers (cutoff > 0, feeds/dormancy.py): a follower whose read mark (the
-- ':read' field of pair:{follower}, read with the pair state the push reads anyway) is
-- absent, stale ('-<ms>') or older than cutoff is skipped, its feeds left to be rebuilt
-- on its next read; the first skip turns a read time into '-<ms>' (one HSET per follower
-- and inactivity spell). A withdraw or unpush reads the mark alone (one HGET).
-- KEYS: bucket, ... (the feed bucket of the first follower, or of every follower of one
--      slot: routing)
-- ARGV 8..: cutoff (ms, wall time: a read before it is inactive; 0 delivers to all), op,
--           post_id, author_id, ts, reposter_id, flags, n, follower_id, ... (segments: an
--           event's facts, then its n followers)
-- Returns the followers reached, one count per segment.

local CUTOFF = tonumber(ARGV[8])
local READ = ':read'

-- kept: true when fan-out writes to follower's feeds, given its read mark (or false).
local function kept(follower, seen)
  if CUTOFF <= 0 then return true end
  if not seen then return false end
  local first = string.byte(seen, 1)
  if first == 45 then return false end -- '-': skipped before
  local at = seen
  if first == 126 then at = string.sub(seen, 2) end -- '~': its feeds are being rebuilt
  if tonumber(at) >= CUTOFF then return true end
  redis.call('HSET', key('pair', follower), READ, '-' .. at)
  return false
end

-- read_mark: follower's read mark alone (false with the filter off: not read).
local function read_mark(follower)
  if CUTOFF <= 0 then return false end
  return redis.call('HGET', key('pair', follower), READ)
end

local counts = {}
local i = 9
while i <= #ARGV do
  local op, post, author, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local reposter, flags, n = ARGV[i + 4], ARGV[i + 5], tonumber(ARGV[i + 6])
  local b = bucket_of(post)
  local reached = 0
  local first, last = i + 7, i + 6 + n
  if op == 'post' then
    for j = first, last do
      local follower = ARGV[j]
      local state, seen
      if CUTOFF > 0 then
        local states = redis.call('HMGET', key('pair', follower), author, READ)
        state, seen = states[1], states[2]
      else
        state = redis.call('HGET', key('pair', follower), author)
      end
      if kept(follower, seen) and follows(state) and not hides(state, ts) then
        push(follower, post, b, ts, '', '', false)
        reached = reached + 1
      end
    end
  elseif op == 'repost' then
    local mark = string.find(flags, 'l', 1, true) and LABEL_MARK or ''
    ts = string.format('%d', tonumber(ts))
    local for_you = string.find(flags, 'f', 1, true) ~= nil
    for j = first, last do
      local follower = ARGV[j]
      local states
      if CUTOFF > 0 then
        states = redis.call('HMGET', key('pair', follower), reposter, author, READ)
      else
        states = redis.call('HMGET', key('pair', follower), reposter, author)
      end
      if kept(follower, states[3]) and follower ~= author and follows(states[1])
          and not hides(states[1], ts) and not hides(states[2], ts) then
        push(follower, post, b, ts, reposter, mark, for_you)
        reached = reached + 1
      end
    end
  elseif op == 'withdraw' then
    local facts = { author ~= '' and author or false, ts ~= '' and ts or false,
      string.find(flags, 'd', 1, true) and '1' or false }
    for j = first, last do
      if kept(ARGV[j], read_mark(ARGV[j])) then
        unpush_via(ARGV[j], post, b, reposter, facts)
        reached = reached + 1
      end
    end
  elseif op == 'unpush' then
    for j = first, last do
      if kept(ARGV[j], read_mark(ARGV[j])) then
        unpush(ARGV[j], post, b)
        reached = reached + 1
      end
    end
  else
    return redis.error_reply('deliver: unknown op ' .. op)
  end
  counts[#counts + 1] = reached
  i = last + 1
end
return counts
