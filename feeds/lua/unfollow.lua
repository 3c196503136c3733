-- unfollow.lua: record that follower no longer follows followee and take the followee's
-- posts and reposts out of the follower's feed (entries another followee reposted stay).
-- ARGV: prefix, buckets, follower_id, followee_id
local prefix, buckets, follower, followee = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]

local following = key(prefix, 'following', follower)
redis.call('SREM', following, followee)
redis.call('SREM', key(prefix, 'followers', followee), follower)
for b = 0, buckets - 1 do
  local feed, vias = feed_key(prefix, follower, b), via_key(prefix, follower, b)
  for _, post in ipairs(redis.call('ZRANGE', feed, 0, -1)) do
    local current = redis.call('HGET', vias, post)
    if current and has(current, followee) then
      current = without(current, followee)
      if current == '' then
        redis.call('HDEL', vias, post)
      else
        redis.call('HSET', vias, post, current)
      end
    end
    if not current or current == '' then
      local author = redis.call('HGET', key(prefix, 'post', post), 'a')
      if not author or redis.call('SISMEMBER', following, author) == 0 then
        redis.call('ZREM', feed, post)
      end
    end
  end
end
return 1
