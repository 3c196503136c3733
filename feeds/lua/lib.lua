-- lib.lua: shared helpers, prepended to every feed script by feeds/scripts.py.
-- Key names mirror feeds/keys.py exactly: <prefix><kind>:{<id>}.
-- Every helper is idempotent: applying it twice leaves Redis as applying it once.
--
-- Every script's ARGV starts with the same seven settings (feeds/store.py, Context):
local PREFIX = ARGV[1]              -- key prefix, e.g. 'fa:'
local BUCKETS = tonumber(ARGV[2])   -- sorted sets per feed
local CAP = tonumber(ARGV[3])       -- Following entries kept per bucket
local FY_CAP = tonumber(ARGV[4])    -- For You entries kept per bucket
local HALF_LIFE = tonumber(ARGV[5]) -- For You: ms after which a repost counts half
local RECENT = tonumber(ARGV[6])    -- posts and reposts kept per author for backfill
local CHUNK = tonumber(ARGV[7])     -- followers visited per call
local LABEL_MARK = '^'              -- via value prefix: entry is forwarded_many_times

local function key(kind, id)
  return PREFIX .. kind .. ':{' .. id .. '}'
end

-- A feed is split into BUCKETS sorted sets by a hash of the post id, so each stays small
-- enough for Redis' compact listpack encoding (about 16 bytes an entry, and fast at ~100
-- entries, where one 800-entry listpack is 4x slower). Attributions live in a hash per
-- bucket. kind is 'feed' (Following) or 'foryou'.
local function bucket_of(post)
  return tonumber(string.sub(redis.sha1hex(post), 1, 8), 16) % BUCKETS
end

local function bucket_key(kind, user, b)
  return PREFIX .. kind .. ':{' .. user .. '}:' .. b
end

local VIA = { feed = 'via', foryou = 'fyvia' }

-- Reposter lists are comma-separated ids, most recent first (ids never hold commas);
-- a Following list may start with LABEL_MARK.
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

local function split_mark(value)
  if string.sub(value, 1, 1) == LABEL_MARK then return string.sub(value, 2), LABEL_MARK end
  return value, ''
end

local function is_deleted(post)
  return redis.call('HEXISTS', key('post', post), 'del') == 1
end

local function author_of(post)
  return redis.call('HGET', key('post', post), 'a')
end

-- hidden_from: a function telling whether a user blocked or muted any of ids. Small
-- blocked_by / muted_by sets are loaded once (a table lookup per follower); a large one
-- (a much-blocked account) is asked per follower with SISMEMBER instead, so a fan-out
-- chunk never reads a huge set whole.
local HIDDEN_INLINE = 512
local function hidden_from(ids)
  local hidden, large = {}, {}
  for _, id in ipairs(ids) do
    for _, kind in ipairs({ 'blocked_by', 'muted_by' }) do
      local k = key(kind, id)
      if redis.call('SCARD', k) <= HIDDEN_INLINE then
        for _, user in ipairs(redis.call('SMEMBERS', k)) do hidden[user] = true end
      else
        large[#large + 1] = k
      end
    end
  end
  return function(user)
    if hidden[user] then return true end
    for _, k in ipairs(large) do
      if redis.call('SISMEMBER', k, user) == 1 then return true end
    end
    return false
  end
end

local function hides(user, target)
  return redis.call('SISMEMBER', key('blocks', user), target) == 1
      or redis.call('SISMEMBER', key('mutes', user), target) == 1
end

-- evict: keep the newest (highest-scored) cap entries of a bucket and its attributions.
local function evict(zkey, vkey, cap)
  if redis.call('ZCARD', zkey) > cap then
    local lowest = redis.call('ZPOPMIN', zkey)
    redis.call('HDEL', vkey, lowest[1])
  end
end

-- push: put post into user's Following feed at time ts, attributed to reposter via
-- ('' for the author's own post), labelled forwarded_many_times when mark is LABEL_MARK.
local function push(user, post, b, ts, via, mark)
  local feed = bucket_key('feed', user, b)
  local vias = bucket_key('via', user, b)
  local added = redis.call('ZADD', feed, 'GT', ts, post)
  if via ~= '' then
    local current = false
    if added == 0 then current = redis.call('HGET', vias, post) end
    if not current then
      redis.call('HSET', vias, post, mark .. via)
    else
      local list, old_mark = split_mark(current)
      if not has(list, via) or (mark ~= '' and old_mark == '') then
        if not has(list, via) then list = via .. ',' .. list end
        if old_mark ~= '' then mark = old_mark end
        redis.call('HSET', vias, post, mark .. list)
      end
    end
  end
  if added == 1 then evict(feed, vias, CAP) end
end

-- for_you_score: social proof with decay. Each reposter the user follows adds a signal
-- worth 2^(t / HALF_LIFE); the score is HALF_LIFE * log2(sum), in ms: one repost scores its
-- time, two at the same time score HALF_LIFE later. Summed in time order, so any arrival
-- order gives the same bits; a score never needs rewriting as time passes.
local function for_you_score(post, list)
  local times = {}
  local reposters = key('reposters', post)
  for id in string.gmatch(list, '[^,]+') do
    local t = redis.call('ZSCORE', reposters, id)
    if t then times[#times + 1] = tonumber(t) end
  end
  if #times == 0 then return nil end
  table.sort(times)
  local top, sum = times[#times], 0
  for _, t in ipairs(times) do sum = sum + 2 ^ ((t - top) / HALF_LIFE) end
  return string.format('%.17g', top + HALF_LIFE * math.log(sum) / math.log(2))
end

-- push_for_you: add reposter via's signal for post to user's For You feed. alone is
-- for_you_score(post, via), the score when via is the entry's only reposter (the same
-- for every follower, so callers compute it once).
local function push_for_you(user, post, b, via, alone)
  local fy = bucket_key('foryou', user, b)
  local vias = bucket_key('fyvia', user, b)
  local current = redis.call('HGET', vias, post)
  if current and has(current, via) then return end
  local list = current and (via .. ',' .. current) or via
  local score = alone
  if current then score = for_you_score(post, list) end
  if not score then return end
  redis.call('HSET', vias, post, list)
  if redis.call('ZADD', fy, score, post) == 1 then evict(fy, vias, FY_CAP) end
end

-- withdraw: take reposter via out of post's attribution in one of user's feeds; returns
-- the reposters left ('' when none) and the label mark, or nil when via was not there.
local function withdraw(kind, user, post, b, via)
  local vias = bucket_key(VIA[kind], user, b)
  local current = redis.call('HGET', vias, post)
  if not current then return nil end
  local list, mark = split_mark(current)
  if not has(list, via) then return nil end
  local rest = without(list, via)
  if rest == '' then
    redis.call('HDEL', vias, post)
  else
    redis.call('HSET', vias, post, mark .. rest)
  end
  return rest, mark
end

-- settle: after post lost an attribution in user's feed of kind, drop the entry if no
-- reason is left (Following: no reposter and the author not followed, or hidden; For
-- You: no reposter), else re-rank it (For You).
local function settle(kind, user, post, b, rest)
  local zkey = bucket_key(kind, user, b)
  if kind == 'foryou' then
    local score = rest ~= '' and for_you_score(post, rest)
    if score then
      redis.call('ZADD', zkey, score, post)
    else
      redis.call('ZREM', zkey, post)
      redis.call('HDEL', bucket_key('fyvia', user, b), post)
    end
    return
  end
  if rest ~= '' then return end
  local author = author_of(post)
  if not author or redis.call('SISMEMBER', key('following', user), author) == 0
      or hides(user, author) then
    redis.call('ZREM', zkey, post)
  end
end

-- unpush_via: withdraw reposter via's attribution of post from both of user's feeds.
local function unpush_via(user, post, b, via)
  for _, kind in ipairs({ 'feed', 'foryou' }) do
    local rest = withdraw(kind, user, post, b, via)
    if rest then settle(kind, user, post, b, rest) end
  end
end

-- unpush: remove post from both of user's feeds whatever brought it there.
local function unpush(user, post, b)
  for kind, via in pairs(VIA) do
    redis.call('ZREM', bucket_key(kind, user, b), post)
    redis.call('HDEL', bucket_key(via, user, b), post)
  end
end

-- purge: take target out of user's feeds: its attributions everywhere, and, when
-- authored is true (block, mute), every entry it authored.
local function purge(user, target, authored)
  for b = 0, BUCKETS - 1 do
    for kind, via in pairs(VIA) do
      local zkey = bucket_key(kind, user, b)
      for _, post in ipairs(redis.call('ZRANGE', zkey, 0, -1)) do
        if authored and author_of(post) == target then
          redis.call('ZREM', zkey, post)
          redis.call('HDEL', bucket_key(via, user, b), post)
        else
          local rest = withdraw(kind, user, post, b, target)
          if rest then
            settle(kind, user, post, b, rest)
          elseif kind == 'feed' and author_of(post) == target then
            -- the author is no longer followed: keep the entry only if reposted
            local current = redis.call('HGET', bucket_key(via, user, b), post)
            settle(kind, user, post, b, current and split_mark(current) or '')
          end
        end
      end
    end
  end
end

-- recent_score: a recent_reposts score, the repost time plus a fraction saying how it
-- was delivered (+0.25 For You too, +0.5 labelled). Exact in a double for ms timestamps.
local function recent_score(ts, for_you, labelled)
  local flags = (for_you and 1 or 0) + (labelled and 2 or 0)
  return string.format('%.2f', tonumber(ts) + flags / 4)
end

-- read_recent_score: the repost time and the two flags back from a recent_reposts score.
local function read_recent_score(score)
  local value = tonumber(score)
  local ts = math.floor(value)
  local flags = math.floor((value - ts) * 4 + 0.5)
  return ts, flags % 2 == 1, flags >= 2
end

-- trim_recent: keep the newest RECENT members of a per-author recent list.
local function trim_recent(k)
  redis.call('ZREMRANGEBYRANK', k, 0, -(RECENT + 1))
end

-- each_follower: call fn(follower) for one SSCAN chunk of source's followers.
-- Returns the next cursor ('0' when the whole set has been visited).
local function each_follower(source, cursor, fn)
  local page = redis.call('SSCAN', key('followers', source), cursor, 'COUNT', CHUNK)
  for _, follower in ipairs(page[2]) do fn(follower) end
  return page[1]
end

-- suspended_at: true if user's account was suspended at event time ts (by the latest
-- suspension and reinstatement on record; feeds/accounts.py has the same rule).
local function suspended_at(user, ts)
  local state = redis.call('HMGET', key('account', user), 'susp', 'rein')
  if not state[1] then return false end
  local susp, rein = tonumber(state[1]), tonumber(state[2] or '-1')
  if tonumber(ts) < susp then return false end
  return not (rein >= susp and rein <= tonumber(ts))
end
