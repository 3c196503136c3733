-- lib.lua: shared helpers, prepended to every feed script by feeds/scripts.py.
-- Key names mirror feeds/keys.py exactly: <prefix><kind>:{<id>}.
-- Every helper is idempotent: applying it twice leaves Redis as applying it once.

local function key(prefix, kind, id)
  return prefix .. kind .. ':{' .. id .. '}'
end

-- A feed is split into `buckets` sorted sets by a hash of the post id, so each stays
-- small enough for Redis' compact listpack encoding (about 16 bytes an entry, and fast
-- at ~100 entries, where one 800-entry listpack is 4x slower). Entry attributions live
-- in a hash per bucket.
local function bucket_of(post, buckets)
  return tonumber(string.sub(redis.sha1hex(post), 1, 8), 16) % buckets
end

local function feed_key(prefix, user, bucket)
  return prefix .. 'feed:{' .. user .. '}:' .. bucket
end

local function via_key(prefix, user, bucket)
  return prefix .. 'via:{' .. user .. '}:' .. bucket
end

-- Reposter lists are comma-separated ids, most recent first (ids never hold commas).
local function has(list, id)
  return string.find(',' .. list .. ',', ',' .. id .. ',', 1, true) ~= nil
end

local function without(list, id)
  local out = {}
  for item in string.gmatch(list, '[^,]+') do
    if item ~= id then out[#out + 1] = item end
  end
  return table.concat(out, ',')
end

local function is_deleted(prefix, post)
  return redis.call('HEXISTS', key(prefix, 'post', post), 'del') == 1
end

-- push: put post (of bucket b) into user's Following feed at time ts, attributed to
-- reposter via ('' for the author's own post). Keeps the newest cap entries of the bucket.
local function push(prefix, user, post, b, ts, via, cap)
  local feed = feed_key(prefix, user, b)
  local vias = via_key(prefix, user, b)
  local added = redis.call('ZADD', feed, 'GT', ts, post)
  if via ~= '' then
    local current = false
    if added == 0 then current = redis.call('HGET', vias, post) end
    if not current then
      redis.call('HSET', vias, post, via)
    elseif not has(current, via) then
      redis.call('HSET', vias, post, via .. ',' .. current)
    end
  end
  if added == 1 and redis.call('ZCARD', feed) > cap then
    local oldest = redis.call('ZPOPMIN', feed)
    redis.call('HDEL', vias, oldest[1])
  end
end

-- unpush_via: withdraw reposter via's attribution of post in user's feed; drop the
-- entry when that was its only reason (no other reposter, author not followed).
local function unpush_via(prefix, user, post, b, via, author)
  local vias = via_key(prefix, user, b)
  local current = redis.call('HGET', vias, post)
  if not current or not has(current, via) then return end
  local rest = without(current, via)
  if rest ~= '' then
    redis.call('HSET', vias, post, rest)
    return
  end
  redis.call('HDEL', vias, post)
  if author == '' or author == false
      or redis.call('SISMEMBER', key(prefix, 'following', user), author) == 0 then
    redis.call('ZREM', feed_key(prefix, user, b), post)
  end
end

-- unpush: remove post from user's feed whatever brought it there.
local function unpush(prefix, user, post, b)
  redis.call('ZREM', feed_key(prefix, user, b), post)
  redis.call('HDEL', via_key(prefix, user, b), post)
end

-- trim_recent: keep the newest n members of a per-author recent list.
local function trim_recent(k, n)
  redis.call('ZREMRANGEBYRANK', k, 0, -(n + 1))
end

-- each_follower: call fn(follower) for one SSCAN chunk of source's followers.
-- Returns the next cursor ('0' when the whole set has been visited).
local function each_follower(prefix, source, cursor, count, fn)
  local page = redis.call('SSCAN', key(prefix, 'followers', source), cursor, 'COUNT', count)
  for _, follower in ipairs(page[2]) do fn(follower) end
  return page[1]
end
