-- follow.lua: record that follower follows followee and backfill the followee's recent
-- posts and reposts into the follower's feeds, as the live fan-out would have delivered
-- them (reposts also into For You when they were, labels kept; skipping what the
-- follower hides).
-- ARGV 8..: follower_id, followee_id
local follower, followee = ARGV[8], ARGV[9]

redis.call('SADD', key('following', follower), followee)
redis.call('SADD', key('followers', followee), follower)
if hides(follower, followee) then return 1 end
local posts = redis.call('ZRANGE', key('recent', followee), 0, -1, 'WITHSCORES')
for i = 1, #posts, 2 do
  push(follower, posts[i], bucket_of(posts[i]), posts[i + 1], '', '')
end
local reposts = redis.call('ZRANGE', key('recent_reposts', followee), 0, -1, 'WITHSCORES')
for i = 1, #reposts, 2 do
  local post = reposts[i]
  local author = author_of(post)
  if author ~= follower and not (author and hides(follower, author)) then
    local ts, for_you, labelled = read_recent_score(reposts[i + 1])
    local b = bucket_of(post)
    push(follower, post, b, ts, followee, labelled and LABEL_MARK or '')
    if for_you then push_for_you(follower, post, b, followee, for_you_score(post, followee)) end
  end
end
return 1
