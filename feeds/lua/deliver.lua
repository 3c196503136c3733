#!lua flags=allow-cross-slot-keys
-- deliver.lua: the delivery step of a fan-out, on one node's share of a chunk of
-- followers (feeds/fanout.py groups followers by node: one group on a standalone Redis).
-- Each segment is one post's delivery to some followers:
--   'post':   push the post into their Following feeds at its time (not of those who
--             block or mute the author, or whom the author blocks, at that time);
--   'unpush': take the post out of both of their feeds, whatever brought it there.
-- The post's facts come in ARGV from the orchestrator; every key touched for a follower
-- carries the follower's tag, so a call touches only the slots of its followers. The
-- call declares the first follower's feed bucket key (routing on a cluster) or, after a
-- refusal, every key of one slot; the flag lets it reach the other slots of its node. The
-- hidden check reads the follower's side only: blocks, blocked_by and mutes of the
-- follower hold the same values as the author's blocked_by, blocks and muted_by.
-- KEYS: feed bucket of the first follower, or of every follower of one slot (routing)
-- ARGV 8..: segments of op, post_id, author_id, ts, n, then n follower ids
-- Returns the followers reached, one count per segment.

-- hidden_for: true if follower must not see author's content of time t (follower blocked
-- or muted author, or author blocked follower), from the follower's keys alone.
local function hidden_for(follower, author, t)
  return hidden_at(redis.call('HGET', key('blocks', follower), author), t)
      or hidden_at(redis.call('HGET', key('blocked_by', follower), author), t)
      or hidden_at(redis.call('HGET', key('mutes', follower), author), t)
end

local counts = {}
local i = 8
while i <= #ARGV do
  local op, post, author, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local n = tonumber(ARGV[i + 4])
  local b = bucket_of(post)
  local reached = 0
  for j = i + 5, i + 4 + n do
    local follower = ARGV[j]
    if op == 'post' then
      if not hidden_for(follower, author, ts) then
        push(follower, post, b, ts, '', '')
        reached = reached + 1
      end
    elseif op == 'unpush' then
      unpush(follower, post, b)
      reached = reached + 1
    else
      return redis.error_reply('deliver: unknown op ' .. op)
    end
  end
  counts[#counts + 1] = reached
  i = i + 5 + n
end
return counts
