#!lua flags=allow-cross-slot-keys
-- deliver_post.lua: the delivery step of a post's fan-out on a Redis Cluster: push the
-- post into the Following feeds of one node's share of a chunk of followers (not those
-- who block or mute the author). feeds/fanout_cluster.py groups the followers by node and
-- declares the first one's feed bucket key (or, after a refusal, every key of one slot);
-- every key touched for a follower carries the follower's tag, and the flag lets the
-- script reach the followers of other slots on the same node (see README, Redis Cluster).
-- The hidden check reads the follower's own blocks / mutes: the same fact as the author's
-- blocked_by / muted_by, on the follower's slot.
-- KEYS: feed bucket of the first follower, or of every follower of one slot (routing)
-- ARGV 8..: post_id, author_id, ts, follower_id, ...
-- Returns the followers pushed to.
local post, author, ts = ARGV[8], ARGV[9], ARGV[10]
local b = bucket_of(post)
local n = 0
for i = 11, #ARGV do
  local follower = ARGV[i]
  if not hides(follower, author) then
    push(follower, post, b, ts, '', '')
    n = n + 1
  end
end
return n
