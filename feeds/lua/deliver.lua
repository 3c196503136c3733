#!lua flags=allow-cross-slot-keys
-- deliver.lua: the delivery step of a fan-out, on one node's share of a chunk of
-- followers (feeds/fanout.py groups followers by node: one group on a standalone Redis).
-- The followers come in groups, each given the events it receives (in the log's order):
-- every follower of a group gets the group's events, one after another, before the next
-- follower, and the groups run in ARGV's order (a follower's groups in a call, and its
-- later calls, carry its later events: its events keep their order). Per
-- follower the step reads its pair state once for all the group's events (one HMGET of
-- every field they need) and builds each touched bucket's keys once; a bucket's size is
-- read once per follower and tracked by the pushes (lib.lua, bucket_slot), so a group of
-- k events costs per delivery about ZADD, ZADD NX and HSET, plus 1/k of the reads. A
-- follower's posts and reposts of one bucket (two or more, the bucket getting no
-- withdrawal or removal in the group; a post and reposts of it make one entry) go in
-- together when the follower gets them all and each post is new to the bucket, and the
-- bucket's feeds stay under their caps (lib.lua, plan_of and push_planned: one ZADD NX per
-- feed, adding and counting the new posts, and one HSET for all of them); else one
-- push_to each, in order: the same keys either way. Each event is one of:
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
-- ARGV 8..: cutoff (ms, wall time: a read before it is inactive; 0 delivers to all), e,
--           op, post_id, author_id, ts, reposter_id, flags, k, event, n, follower_id, ...
--           (the call's event table: e events' facts, op to flags each, each event once;
--           then the groups: k, then k events by their number in the table, then n
--           followers, each of whom gets all k events)
-- Returns the followers reached, one count per event of each group, in ARGV's order.

local CUTOFF = tonumber(ARGV[8])
local READ = ':read'
local PAIR_TAG = PREFIX .. 'pair:{'

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

-- An event of the call's table: {op, post, author, ts, reposter, flags, bucket, and
-- op-specific facts}: a repost's label mark, For You flag and the attribution of a new
-- entry (push_to), a withdrawal's post facts. Read once a call, shared by its groups.
local function event_at(at)
  local op, post, author, ts = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local reposter, flags = ARGV[at + 4], ARGV[at + 5]
  local ev = { op, post, author, ts, reposter, flags, bucket_of(post) }
  if op == 'repost' then
    ev[4] = string.format('%d', tonumber(ts))
    ev[10] = string.find(flags, 'l', 1, true) and LABEL_MARK or ''
    ev[11] = string.find(flags, 'f', 1, true) ~= nil
    ev[12] = ev[10] .. reposter .. '@' .. ev[4] -- the attribution of a new entry
    -- the push (lib.lua), with the list and score of a new entry
    ev[13] = { post, ev[4], reposter, ev[10], ev[11], ev[12],
      ev[11] and ev[12] or ev[12] .. ':', ev[11] and ev[4] or false }
  elseif op == 'withdraw' then
    ev[10] = { author ~= '' and author or false, ts ~= '' and ts or false,
      string.find(flags, 'd', 1, true) and '1' or false }
  elseif op == 'post' then
    ev[13] = { post, ts, '', '', false, nil, false, false }
  elseif op ~= 'unpush' then
    return nil
  end
  return ev
end

-- field: the index of the pair-state field of user in a group's HMGET (added if new).
local function field(fields, index, user)
  local at = index[user]
  if not at then
    at = #fields + 1
    fields[at] = user
    index[user] = at
  end
  return at
end

-- slot_at: bucket b's slot table for the follower at ARGV index j (slots[b], made the
-- follower's when it holds another follower's or was invalidated: slot[6] ~= j).
local function slot_at(slots, follower, b, j)
  local slot = slots[b]
  if not slot or slot[6] ~= j then
    slot = bucket_slot(follower, b, slot)
    slot[6] = j
    slots[b] = slot
  end
  return slot
end

local table_size = tonumber(ARGV[9])
local table_of = {}
for e = 1, table_size do
  local at = 10 + (e - 1) * 6
  local ev = event_at(at)
  if not ev then return redis.error_reply('deliver: unknown op ' .. ARGV[at]) end
  table_of[e] = ev
end

local counts = {}
local plan_tables = {} -- per bucket, the table its plans are written into (lib.lua, plan_of)
local i = 10 + table_size * 6
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  -- the group's events, and per event the index in the HMGET reply of the reposter's
  -- field (by) and of the author's (of), or false
  local fields, index, events, by_at, of_at = {}, {}, {}, {}, {}
  for e = 1, k do
    local ev = table_of[tonumber(ARGV[i + e])]
    events[e] = ev
    local op = ev[1]
    if op == 'post' then
      by_at[e], of_at[e] = false, field(fields, index, ev[3])
    elseif op == 'repost' then
      by_at[e] = field(fields, index, ev[5])
      of_at[e] = field(fields, index, ev[3])
    else
      by_at[e], of_at[e] = false, false
    end
  end
  -- the read mark last, when the filter is on (read with the pair states, or alone)
  local mark_at = false
  if CUTOFF > 0 then
    fields[#fields + 1] = READ
    mark_at = #fields
  end
  -- per bucket, the group's events in it and, when they are two or more posts and
  -- reposts, their plan (lib.lua, plan_of): written to each follower's bucket together
  -- when it gets them all (push_planned)
  local in_bucket, plans = {}, {}
  for e = 1, k do
    local b = events[e][7]
    local list = in_bucket[b]
    if list then list[#list + 1] = e else in_bucket[b] = { e } end
  end
  for b, list in pairs(in_bucket) do
    if #list > 1 then
      local pushes = {}
      for x, e in ipairs(list) do
        pushes[x] = events[e][13]
        if not pushes[x] then pushes = nil break end
      end
      if pushes then
        plans[b] = plan_of(pushes, plan_tables[b])
        plan_tables[b] = plans[b]
      end
    end
  end
  local n = tonumber(ARGV[i + 1 + k])
  local first = i + 2 + k
  local base = #counts
  for e = 1, k do counts[base + e] = 0 end
  -- per field of the follower at hand: whether the follower follows that user, and
  -- whether the pair state has hiding parts at all (without, hides is false at any
  -- time); per bucket, one slot table, the follower at hand's when slot[6] is its ARGV
  -- index
  local follow, hiding, slots, got, hits = {}, {}, {}, {}, {}
  local one, nfields = {}, #fields
  for j = first, first + n - 1 do
    local follower = ARGV[j]
    local states = one -- one field (a post's author, a mark alone): HGET, no reply table
    if nfields == 1 then
      one[1] = redis.call('HGET', PAIR_TAG .. follower .. '}', fields[1])
    elseif nfields > 1 then
      states = redis.call('HMGET', PAIR_TAG .. follower .. '}', unpack(fields))
    end
    if kept(follower, mark_at and states[mark_at]) then
      for f = 1, nfields do
        local state = states[f]
        follow[f] = follows(state)
        hiding[f] = state and string.find(state, ';', 1, true) ~= nil
      end
      for b in pairs(plans) do hits[b] = 0 end
      for e = 1, k do
        local ev = events[e]
        local op, post, b = ev[1], ev[2], ev[7]
        local reached = false
        if op == 'post' then
          local of = of_at[e]
          if follow[of] and not (hiding[of] and hides(states[of], ev[4])) then
            if plans[b] then
              hits[b] = hits[b] + 1
            else
              push_to(slot_at(slots, follower, b, j), post, ev[4], '', '', false)
            end
            reached = true
          end
        elseif op == 'repost' then
          local by, of = by_at[e], of_at[e]
          if follower ~= ev[3] and follow[by]
              and not (hiding[by] and hides(states[by], ev[4]))
              and not (hiding[of] and hides(states[of], ev[4])) then
            if plans[b] then
              hits[b] = hits[b] + 1
            else
              push_to(slot_at(slots, follower, b, j), post, ev[4], ev[5], ev[10], ev[11], ev[12])
            end
            reached = true
          end
        elseif op == 'withdraw' then
          unpush_via(follower, post, b, ev[5], ev[10])
          if slots[b] then slots[b][6] = false end -- its feeds changed outside the slot
          reached = true
        else
          unpush(follower, post, b)
          if slots[b] then slots[b][6] = false end
          reached = true
        end
        got[e] = reached
        if reached then counts[base + e] = counts[base + e] + 1 end
      end
      -- the planned buckets: together when the follower gets all of their events and
      -- each post is new to its bucket, else one push_to each, in order
      for b, plan in pairs(plans) do
        local hit = hits[b]
        if hit > 0 then
          local slot = slot_at(slots, follower, b, j)
          if hit < plan.pushes or not push_planned(slot, plan) then
            for _, e in ipairs(in_bucket[b]) do
              if got[e] then
                local p = events[e][13]
                push_to(slot, p[1], p[2], p[3], p[4], p[5], p[6])
              end
            end
          end
        end
      end
    end
  end
  i = first + n
end
return counts
