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
local LABEL_MARK = '^'              -- reposter prefix in a via list: repost labelled forwarded_many_times

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

-- Attribution: one hash per bucket, via:{user}:<b>, serves both feeds: post -> the list of
-- reposters the user follows, comma-separated items, latest Following reason first (ties
-- by id), whatever order the reposts arrived in; ids never hold commas or ':'. An item is
--   [^]id@t      a Following reason at t and a For You signal at t (the common case);
--   [^]id@t:f    a Following reason at t and a For You signal at f (an earlier repost);
--   [^]id@t:     a Following reason at t only (no For You signal);
-- LABEL_MARK in front: that reposter's latest repost was labelled forwarded_many_times.
-- A list is kept while the post is in either feed of the bucket. Keeping the times in the
-- follower's own keys lets every re-ranking and re-placing run on the follower's slot
-- (README, Redis Cluster). An item is {id, mark, t, f} (f nil: no For You signal).
local function parse(list)
  local items, n, s, len = {}, 0, 1, #list
  while s <= len do
    local e = string.find(list, ',', s, true)
    e = e and e - 1 or len
    local mark = ''
    if string.byte(list, s) == 94 then mark, s = LABEL_MARK, s + 1 end -- '^'
    -- ids never hold ':' (the For You tail starts at the first), but may hold '@': the
    -- time starts after the last '@' before the tail
    local colon = string.find(list, ':', s, true)
    if colon and colon > e then colon = nil end
    local head = colon and colon - 1 or e
    local at = string.find(list, '@', s, true)
    while true do
      local later = string.find(list, '@', at + 1, true)
      if not later or later > head then break end
      at = later
    end
    local t = tonumber(string.sub(list, at + 1, head))
    local f = t
    if colon then f = colon < e and tonumber(string.sub(list, colon + 1, e)) or nil end
    n = n + 1
    items[n] = { string.sub(list, s, at - 1), mark, t, f }
    s = e + 2
  end
  return items
end

local function item_text(item)
  local t = string.format('%d', item[3])
  local tail = ''
  if item[4] == nil then
    tail = ':'
  elseif item[4] ~= item[3] then
    tail = ':' .. string.format('%d', item[4])
  end
  return item[2] .. item[1] .. '@' .. t .. tail
end

local function has(list, id)
  local padded = ',' .. list
  return string.find(padded, ',' .. id .. '@', 1, true) ~= nil
      or string.find(padded, ',' .. LABEL_MARK .. id .. '@', 1, true) ~= nil
end

-- arrange: the canonical list of items: latest Following reason first, ties by id.
-- Returns the list and the latest Following reason's time (nil when empty).
local function arrange(items)
  if #items == 0 then return '', nil end
  table.sort(items, function(x, y)
    if x[3] ~= y[3] then return x[3] > y[3] end
    return x[1] < y[1]
  end)
  local parts = {}
  for i, item in ipairs(items) do parts[i] = item_text(item) end
  return table.concat(parts, ','), items[1][3]
end

-- merge: list with reposter via's repost of time t (mark as given; a For You signal too
-- when for_you) added, or its times raised to t, and its items (arranged); nil when
-- nothing changes.
local function merge(list, via, t, mark, for_you)
  local items = list and parse(list) or {}
  t = tonumber(t)
  for _, item in ipairs(items) do
    if item[1] == via then
      local changed = false
      if t > item[3] then item[2], item[3], changed = mark, t, true end
      if for_you and (item[4] == nil or t > item[4]) then item[4], changed = t, true end
      if not changed then return nil end
      return (arrange(items)), items
    end
  end
  items[#items + 1] = { via, mark, t, for_you and t or nil }
  return (arrange(items)), items
end

local function is_deleted(post)
  return redis.call('HEXISTS', key('post', post), 'del') == 1
end

local function author_of(post)
  return redis.call('HGET', key('post', post), 'a')
end

-- Hiding state of a pair (the blocks, blocked_by and mutes parts of pair:{user}): 'on|off',
-- the latest block (mute) and unblock (unmute) event times, either possibly empty. The latest event by event time wins, whatever the
-- arrival order; a block also takes back everything before it, so content at time t is
-- hidden when the pair is blocked now, or when t is before the latest unblock.
local function hidden_at(value, t)
  if not value then return false end
  local on, off = string.match(value, '^(%d*)|(%d*)$')
  if not on or on == '' then return false end
  if off == '' or tonumber(off) < tonumber(on) then return true end
  return tonumber(t) < tonumber(off)
end

-- The state of a pair seen from user, pair:{user}: other -> 'follow;blocks;blocked_by;mutes'
-- (trailing empty parts left out): user's follow of other, user's block of other, other's
-- block of user, user's mute of other, each 'on|off' (the latest on and off event times,
-- either possibly empty) or empty. One read per pair, on user's slot: a delivery checks
-- that the follower still follows the source and hides neither party (exact, whatever
-- the orchestrator read before).
local PAIR_PART = { follow = 1, blocks = 2, blocked_by = 3, mutes = 4 }

local function pair_parts(value)
  local parts = { '', '', '', '' }
  if value then
    local i = 1
    for piece in string.gmatch(value .. ';', '([^;]*);') do
      parts[i] = piece
      i = i + 1
    end
  end
  return parts
end

-- latest: merge an on (off) event of time ts into a value 'on|off': the latest of each.
local function latest(value, ts, on)
  local first, second = string.match(value ~= '' and value or '|', '^(%d*)|(%d*)$')
  if on then
    if first == '' or tonumber(ts) > tonumber(first) then first = ts end
  else
    if second == '' or tonumber(ts) > tonumber(second) then second = ts end
  end
  return first .. '|' .. second
end

-- set_pair: merge an event of kind (follow, blocks, blocked_by, mutes) and time ts into
-- user's state of the pair with other; returns that part's new value.
local function set_pair(user, other, kind, ts, on)
  local k = key('pair', user)
  local parts = pair_parts(redis.call('HGET', k, other))
  local i = PAIR_PART[kind]
  parts[i] = latest(parts[i], ts, on)
  local value = table.concat(parts, ';'):gsub(';+$', '')
  redis.call('HSET', k, other, value)
  return parts[i]
end

-- is_on: true when a value 'on|off' is on now (a tie goes to off).
local function is_on(value)
  if string.byte(value, -1) == 124 then return #value > 1 end -- 'on|': never off
  local first, second = string.match(value, '^(%d*)|(%d*)$')
  return first ~= nil and first ~= '' and (second == '' or tonumber(first) > tonumber(second))
end

-- hides: true if user's pair state value (a pair:{user} field) hides content of time t:
-- user blocked or muted other, or other blocked user. A follow alone has no ';'.
local function hides(value, t)
  if not value or not string.find(value, ';', 1, true) then return false end
  local parts = pair_parts(value)
  return hidden_at(parts[2], t) or hidden_at(parts[3], t) or hidden_at(parts[4], t)
end

-- follows: true if user's pair state value says user follows other now.
local function follows(value)
  if not value then return false end
  local semi = string.find(value, ';', 1, true)
  if semi then value = string.sub(value, 1, semi - 1) end
  return value ~= '' and is_on(value)
end

-- hidden_pair: true if user must not see other's content of time t, from user's keys.
local function hidden_pair(user, other, t)
  return hides(redis.call('HGET', key('pair', user), other), t)
end

-- A bucket slot: one user's bucket as a push sees it: {Following key, For You key, via
-- key, Following size, For You size, a place for the caller's mark}, each size false
-- until read. A size is read (ZCARD)
-- the first time an entry is added to that feed and then kept up to date by the pushes
-- through the slot, so a delivery step pushing several posts of one bucket to a follower
-- counts the bucket once. Only push_to may change a slot's feeds while the slot is used
-- (a step that also re-places or removes entries makes a new slot afterwards).
local FEED_TAG, FY_TAG, VIA_TAG = PREFIX .. 'feed:{', PREFIX .. 'foryou:{', PREFIX .. 'via:{'

-- bucket_slot: user's bucket b as a slot, written into the table slot when given (a
-- caller visiting many users reuses one table per bucket), else a new one.
local TAILS = {} -- bucket number -> '}:<b>', made once (a number's text costs a format)
local function bucket_slot(user, b, slot)
  local tail = TAILS[b]
  if not tail then
    tail = '}:' .. b
    TAILS[b] = tail
  end
  slot = slot or {}
  slot[1], slot[2], slot[3] = FEED_TAG .. user .. tail, FY_TAG .. user .. tail,
    VIA_TAG .. user .. tail
  slot[4], slot[5], slot[6] = false, false, false
  return slot
end

-- grown: an entry was just added to slot's feed z (1 Following, 2 For You): keep its
-- newest (highest-scored) cap entries; an evicted entry's attribution goes unless the
-- bucket's other feed still holds the post. The feed's size is read once, then tracked.
local function grown(slot, z, cap)
  local n = slot[z + 3]
  if n then n = n + 1 else n = redis.call('ZCARD', slot[z]) end
  if n > cap then
    local lowest = redis.call('ZPOPMIN', slot[z])
    if not redis.call('ZSCORE', slot[3 - z], lowest[1]) then
      redis.call('HDEL', slot[3], lowest[1])
    end
    n = n - 1
  end
  slot[z + 3] = n
end

-- for_you_score: social proof with decay. Each reposter the user follows adds a signal
-- worth 2^(t / HALF_LIFE); the score is HALF_LIFE * log2(sum), in ms: one repost scores its
-- time, two at the same time score HALF_LIFE later. Summed in time order, so any arrival
-- order gives the same bits; a score never needs rewriting as time passes. The times are
-- the items' For You signals (parse); nil when there is none.
local function for_you_score(items)
  local times = {}
  for _, item in ipairs(items) do
    if item[4] then times[#times + 1] = item[4] end
  end
  if #times == 0 then return nil end
  table.sort(times)
  local top, sum = times[#times], 0
  for _, t in ipairs(times) do sum = sum + 2 ^ ((t - top) / HALF_LIFE) end
  return string.format('%.17g', top + HALF_LIFE * math.log(sum) / math.log(2))
end

-- push_to: put post into the Following feed of a bucket slot (bucket_slot) at time ts
-- (a string of digits), attributed to reposter via ('' for the author's own post),
-- labelled forwarded_many_times when mark is LABEL_MARK; with for_you, also add via's
-- signal of time ts to the post's For You entry, re-ranked from its reposters' signals. A
-- Following entry sits at its latest reason's time (ZADD GT). A new entry in both feeds
-- costs ZADD, ZADD NX, HSET and, the first time a feed of the slot grows, its ZCARD: a list
-- exists only while one of the two feeds holds the post, so there is none to read.
-- item: mark .. via .. '@' .. ts, or nil to build it.
local function push_to(slot, post, ts, via, mark, for_you, item)
  local feed, fy, vias = slot[1], slot[2], slot[3]
  local added = redis.call('ZADD', feed, 'GT', ts, post)
  if via == '' then
    if added == 1 then grown(slot, 1, CAP) end
    return
  end
  local fresh = 0
  if added == 1 and for_you then fresh = redis.call('ZADD', fy, 'NX', ts, post) end
  local list, items
  item = item or mark .. via .. '@' .. ts
  if fresh == 1 then
    list = item
  else
    local current = redis.call('HGET', vias, post)
    if not current then
      list = for_you and item or item .. ':'
    else
      list, items = merge(current, via, ts, mark, for_you)
    end
  end
  if list then redis.call('HSET', vias, post, list) end
  if added == 1 then grown(slot, 1, CAP) end
  if fresh == 1 then
    grown(slot, 2, FY_CAP)
  elseif for_you and list then
    if redis.call('ZADD', fy, for_you_score(items or parse(list)), post) == 1 then
      grown(slot, 2, FY_CAP)
    end
  end
end

-- Pushes of several posts into one bucket together (deliver.lua: a follower's posts and
-- reposts of one bucket in a delivery group). A push is {post, ts text, via, mark,
-- for_you, item, list, score} as push_to takes the first six (via '' for the author's own
-- post, item the attribution of a new entry when via is not ''); list is the attribution
-- list push_to writes for a new entry (item, with ':' after it when Following only; false
-- for the author's post) and score the For You score of a new entry (ts for a For You
-- push, else false). A plan (plan_of) is made once for pushes that many followers get,
-- then written to each follower's slot (push_planned) in a few calls when every post is
-- new to the slot and no feed passes its cap; the keys are then what one push_to per
-- push, in order, leaves.

-- merged: pushes of one post (its author's post and reposts of it, met in one group)
-- made one, as push_to one after another makes the entry of a post new to the bucket:
-- Following at the latest of their times (ZADD GT), the list their items merged in order
-- (the first a new entry's, merge for the others), For You when one of them is a For You
-- push, ranked from that list's signals. In the form of a push's post, ts, list, score;
-- the entries in the order of their first push, and those with a list in the order of
-- their first repost (push_to writes a post's list first there: a hash keeps its fields
-- in the order they were first written).
local function merged(pushes)
  local at, out, listed = {}, {}, {}
  for _, p in ipairs(pushes) do
    local e = at[p[1]]
    if not e then
      e = { p[1], p[2], [7] = false, [8] = false, [9] = 0 }
      at[p[1]] = e
      out[#out + 1] = e
    elseif tonumber(p[2]) > tonumber(e[2]) then
      e[2] = p[2]
    end
    if p[7] then
      if e[7] then
        e[7] = merge(e[7], p[3], p[2], p[4], p[5]) or e[7]
      else
        e[7] = p[7]
        listed[#listed + 1] = e
      end
      e[9] = e[9] + 1
      if p[8] then e[8] = p[8] end
    end
  end
  for _, e in ipairs(listed) do
    -- a lone repost ranks at its own time (the number for_you_score gives)
    if e[8] and e[9] > 1 then e[8] = for_you_score(parse(e[7])) end
  end
  return out, listed
end

-- plan_of: the plan of pushes, written into plan when given (a caller making many plans
-- reuses one table per bucket: its arrays grow once) or a new table: the ZADD arguments
-- of each feed (zargs and fyargs, nz and nf of them: two a post), the HSET arguments
-- of the attributions (hargs, nh), the posts with reposts (attributed, na) and those whose
-- reposts all go to Following only (plain, np: their attribution push_to reads first);
-- the arrays hold stale values past their counts. A post met twice makes one entry
-- (merged); else each push is one. The attributions go in the order push_to one push at
-- a time writes them, so the hash is the same to the byte.
local function plan_of(pushes, plan)
  local entries, listed, seen = pushes, pushes, {}
  for _, p in ipairs(pushes) do
    if seen[p[1]] then
      entries, listed = merged(pushes)
      break
    end
    seen[p[1]] = true
  end
  plan = plan or { zargs = {}, fyargs = {}, hargs = {}, attributed = {}, plain = {} }
  local zargs, fyargs, hargs = plan.zargs, plan.fyargs, plan.hargs
  local attributed, plain = plan.attributed, plan.plain
  local nz, nf, nh, na, np = 0, 0, 0, 0, 0
  for _, e in ipairs(entries) do
    zargs[nz + 1], zargs[nz + 2] = e[2], e[1]
    nz = nz + 2
  end
  for _, e in ipairs(listed) do
    local post = e[1]
    if e[7] then
      hargs[nh + 1], hargs[nh + 2] = post, e[7]
      nh = nh + 2
      na = na + 1
      attributed[na] = post
      if e[8] then
        fyargs[nf + 1], fyargs[nf + 2] = e[8], post
        nf = nf + 2
      else
        np = np + 1
        plain[np] = post
      end
    end
  end
  plan.nz, plan.nf, plan.nh, plan.na, plan.np = nz, nf, nh, na, np
  plan.pushes = #pushes
  return plan
end

-- none: true when a reply of ZMSCORE or HMGET holds no value.
local function none(reply)
  for i = 1, #reply do
    if reply[i] then return false end
  end
  return true
end

-- push_planned: plan's pushes into slot, then true, when both of its feeds stay under
-- their caps (no entry is evicted) and every post is new to it: not in the Following
-- feed, a For You push's not in For You, a Following-only repost's without an
-- attribution list. Then push_to would add each entry (ZADD GT of a missing member adds
-- it; ZADD NX to For You too) and write each repost's attribution as a new entry's,
-- which one ZADD per feed and one HSET do here, the feeds' sizes tracked as push_to
-- tracks them. The ZADD NX of each feed both adds the posts new to it and counts them
-- (no scan to check first): when one was there already, the feed keeps it as it was,
-- the others are in at the times push_to gives a new entry, the size counts them, and
-- false tells the caller to push them all one by one, in order (push_to then finds
-- those entries present, as its ZADD GT would have left them, and writes what a push of
-- each leaves, no feed passing its cap). For that, a repost's post has no attribution
-- list before when a feed holds entries (push_to, finding the entry present, would
-- merge into one where a push of a new entry writes its own). Otherwise nothing is
-- written and false.
local function push_planned(slot, plan)
  local k, nfy = plan.nz / 2, plan.nf / 2
  local n = slot[4] or redis.call('ZCARD', slot[1])
  slot[4] = n
  if n + k > CAP then return false end
  local m = 0
  if nfy > 0 then
    m = slot[5] or redis.call('ZCARD', slot[2])
    slot[5] = m
    if m + nfy > FY_CAP then return false end
  end
  local feed, fy, vias = slot[1], slot[2], slot[3]
  local listed, nl = plan.plain, plan.np
  if n > 0 or m > 0 then listed, nl = plan.attributed, plan.na end
  if nl > 0 and not none(redis.call('HMGET', vias, unpack(listed, 1, nl))) then
    return false
  end
  local added = redis.call('ZADD', feed, 'NX', unpack(plan.zargs, 1, plan.nz))
  slot[4] = n + added
  if added < k then return false end
  if nfy > 0 then
    local fresh = redis.call('ZADD', fy, 'NX', unpack(plan.fyargs, 1, plan.nf))
    slot[5] = m + fresh
    if fresh < nfy then return false end
  end
  if plan.nh > 0 then redis.call('HSET', vias, unpack(plan.hargs, 1, plan.nh)) end
  return true
end

-- push: push_to user's bucket b of post (ts: a number or a string of digits).
local function push(user, post, b, ts, via, mark, for_you)
  if type(ts) ~= 'string' then ts = string.format('%d', ts) end
  push_to(bucket_slot(user, b), post, ts, via, mark, for_you)
end

-- post_facts: the post's author, time and deletion mark ({a, ts, del}, any of them false),
-- read from its record (the post's slot); a delivery step gets them in ARGV instead.
local function post_facts(post)
  return redis.call('HMGET', key('post', post), 'a', 'ts', 'del')
end

-- author_time: the post's own time when it belongs in user's Following feed for its own
-- sake (user follows its author, neither hides the other at that time, not deleted), else
-- nil. facts: post_facts(post), or nil to read them.
local function author_time(user, post, facts)
  local record = facts or post_facts(post)
  local author, ts = record[1], record[2]
  if not author or not ts or record[3] or author == user then return nil end
  if redis.call('SISMEMBER', key('following', user), author) == 0 then return nil end
  if hidden_pair(user, author, ts) then return nil end
  return tonumber(ts)
end

-- place: re-place post in both of user's feeds after its reasons changed: a Following
-- entry sits at the latest of its remaining reasons (the post's own time, each reposter's
-- repost time), and its shown comment and label are the latest reposter's; a For You
-- entry is re-ranked from its remaining signals. An entry with no reason left goes; an
-- entry a feed no longer holds (evicted) stays out (ZADD XX). The list goes when neither
-- feed holds the post. items: the remaining items (parse), or nil to read them. facts:
-- post_facts(post), or nil to read them.
local function place(user, post, b, facts, items)
  local feed, fy = bucket_key('feed', user, b), bucket_key('foryou', user, b)
  local vkey = bucket_key('via', user, b)
  if not items then
    local current = redis.call('HGET', vkey, post)
    items = current and parse(current) or {}
  end
  local fy_score = for_you_score(items)
  local list, score = arrange(items)
  local own = author_time(user, post, facts)
  if own and (not score or own > score) then score = own end
  local kept = false
  if score then
    redis.call('ZADD', feed, 'XX', score, post)
    kept = redis.call('ZSCORE', feed, post) ~= false
  else
    redis.call('ZREM', feed, post)
  end
  if fy_score then
    redis.call('ZADD', fy, 'XX', fy_score, post)
    kept = kept or redis.call('ZSCORE', fy, post) ~= false
  else
    redis.call('ZREM', fy, post)
  end
  if list == '' or not kept then
    redis.call('HDEL', vkey, post)
  else
    redis.call('HSET', vkey, post, list)
  end
end

-- unpush_via: take reposter via's attribution of post out of user's feeds and re-place
-- the entry (facts: post_facts(post), or nil to read them).
local function unpush_via(user, post, b, via, facts)
  local current = redis.call('HGET', bucket_key('via', user, b), post)
  if not current or not has(current, via) then return end
  local kept = {}
  for _, item in ipairs(parse(current)) do
    if item[1] ~= via then kept[#kept + 1] = item end
  end
  place(user, post, b, facts, kept)
end

-- unpush: remove post from both of user's feeds whatever brought it there.
local function unpush(user, post, b)
  redis.call('ZREM', bucket_key('feed', user, b), post)
  redis.call('ZREM', bucket_key('foryou', user, b), post)
  redis.call('HDEL', bucket_key('via', user, b), post)
end

-- purge: take target's reasons out of user's feeds and re-place what they touched.
-- gone(t) tells whether a reason of time t goes (a later reason going means every earlier
-- one goes: gone never rises with t). A reason is target's repost of any post; with
-- authored (block, mute), also every reason for a post target authored (its own time,
-- and others' reposts of it). Without authored (unfollow) target's own posts lose their
-- own reason through place, since target is no longer followed. facts maps each post of
-- user's feeds to post_facts(post), read by the caller (the posts' slots); a post without
-- facts arrived after that read, when the new state already kept it out.
local function purge(user, target, gone, authored, facts)
  for b = 0, BUCKETS - 1 do
    local vkey = bucket_key('via', user, b)
    local seen = {}
    for _, kind in ipairs({ 'feed', 'foryou' }) do
      for _, post in ipairs(redis.call('ZRANGE', bucket_key(kind, user, b), 0, -1)) do
        local record = facts[post]
        if record and not seen[post] then
          seen[post] = true
          local own = record[1] == target
          local touched = own
          local current = redis.call('HGET', vkey, post)
          local kept = {}
          if current then
            for _, item in ipairs(parse(current)) do
              local involved = item[1] == target or (authored and own)
              if involved and gone(item[3]) then
                touched = true
              else
                if involved and item[4] and gone(item[4]) then item[4], touched = nil, true end
                kept[#kept + 1] = item
              end
            end
          end
          if touched then place(user, post, b, record, kept) end
        end
      end
    end
  end
end

-- set_follow: record a follow (on) or unfollow of event time ts on follower's slot (the
-- latest wins, a tie goes to unfollow, whatever the arrival order); true if follower now
-- follows followee. The caller mirrors the answer in followers:{followee} (the
-- followee's slot).
local function set_follow(follower, followee, ts, on)
  local following = is_on(set_pair(follower, followee, 'follow', ts, on))
  if following then
    redis.call('SADD', key('following', follower), followee)
  else
    redis.call('SREM', key('following', follower), followee)
  end
  return following
end

-- read_recent_score: the repost time and the two flags back from a recent_reposts score
-- (the repost time plus +0.25 when delivered to For You too, +0.5 when labelled; written by
-- feeds/store.py).
local function read_recent_score(score)
  local value = tonumber(score)
  local ts = math.floor(value)
  local flags = math.floor((value - ts) * 4 + 0.5)
  return ts, flags % 2 == 1, flags >= 2
end

-- backfill: push followee's recent posts and reposts, as read by the caller (the
-- followee's slot), into follower's feeds as the live fan-out delivered them (reposts also
-- into For You when they were, labels kept), skipping what is hidden between the follower
-- and the author or reposter at the item's time. posts: {post, ts} pairs; reposts:
-- {post, recent_reposts score, author or ''} triples.
local function backfill(follower, followee, posts, reposts)
  for _, row in ipairs(posts) do
    if not hidden_pair(follower, followee, row[2]) then
      push(follower, row[1], bucket_of(row[1]), row[2], '', '', false)
    end
  end
  for _, row in ipairs(reposts) do
    local post, author = row[1], row[3]
    local t, for_you, labelled = read_recent_score(row[2])
    if author ~= follower and not hidden_pair(follower, followee, t)
        and not (author ~= '' and hidden_pair(follower, author, t)) then
      push(follower, post, bucket_of(post), t, followee, labelled and LABEL_MARK or '', for_you)
    end
  end
end

-- restore: after an unblock (unmute) of time since, give viewer back target's content of
-- that time or later that arrived while the pair looked hidden: target's recent posts and
-- reposts of time since or later (posts, reposts: as for backfill) when viewer follows
-- target, and the reposts of target's recent posts by those viewer follows (others:
-- {post, reposter, repost time, the reposter's recent_reposts score} of reposts of time
-- since or later still in the reposter's recent list). So the content after an unblock
-- reaches the feeds whether it arrived before or after the unblock.
local function restore(viewer, target, posts, reposts, others)
  if redis.call('SISMEMBER', key('following', viewer), target) == 1 then
    backfill(viewer, target, posts, reposts)
  end
  for _, row in ipairs(others) do
    local post, reposter, at = row[1], row[2], row[3]
    if reposter ~= viewer
        and redis.call('SISMEMBER', key('following', viewer), reposter) == 1
        and not hidden_pair(viewer, reposter, at)
        and not hidden_pair(viewer, target, at) then
      local t, for_you, labelled = read_recent_score(row[4])
      push(viewer, post, bucket_of(post), t, reposter, labelled and LABEL_MARK or '', for_you)
    end
  end
end

