#!lua flags=allow-cross-slot-keys
-- deliver_post.lua: the delivery step of posts' fan-out on a Redis Cluster: push each post
-- into the Following feeds of one node's share of its author's followers (not those who
-- block or mute the author). feeds/fanout_cluster.py groups a batch's followers by node
-- and declares the first follower's feed bucket key (or, after a refusal, every key of
-- one slot); every key touched for a follower carries the follower's tag, and the flag
-- lets the script reach the followers of other slots on the same node (see README, Redis
-- Cluster). The hidden check (lib.lua's hidden_pair) reads the follower's side only:
-- blocks, blocked_by and mutes of the follower hold the same values as the author's
-- blocked_by, blocks and muted_by, on the follower's slot.
-- KEYS: feed bucket of the first follower, or of every follower of one slot (routing)
-- ARGV 8..: segments of post_id, author_id, ts, n, then n follower ids
-- Returns the followers pushed to, one count per segment.
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
  local post, author, ts, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local b = bucket_of(post)
  local pushed = 0
  for j = i + 4, i + 3 + n do
    local follower = ARGV[j]
    if not hidden_for(follower, author, ts) then
      push(follower, post, b, ts, '', '')
      pushed = pushed + 1
    end
  end
  counts[#counts + 1] = pushed
  i = i + 4 + n
end
return counts
