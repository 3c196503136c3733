-- lib_shop.lua: orders and purchase attribution, prepended (after lib.lua) to the scripts
-- that change an order or can learn who a purchase credits: purchase, order_status, post
-- and repost.
--
-- An order credits the author of its via_post and the reposter of its via_repost once
-- each (once per creator if both are the same person) while it is active: purchased and
-- neither cancelled nor refunded. Topics are not ordered against each other, so a creator
-- may become known after the purchase: the order then waits in awaiting_post /
-- awaiting_repost and is credited when the post or repost is recorded.

-- reconcile_credit: make the creators credited with order match what they should be.
-- Idempotent and order-independent: state lives in the order (field 'credited') and in
-- each creator's credited set.
local function reconcile_credit(order)
  local o = key('order', order)
  local f = redis.call('HMGET', o, 'amt', 'cur', 'status', 'cr_post', 'cr_repost', 'credited',
    'bought')
  local amount, currency, status = tonumber(f[1] or '0'), f[2] or '', f[3]
  local want, have = {}, {}
  if f[7] == '1' and status ~= 'cancelled' and status ~= 'refunded' then
    if f[4] then want[f[4]] = true end
    if f[5] then want[f[5]] = true end
  end
  if f[6] then
    for id in string.gmatch(f[6], '[^,]+') do have[id] = true end
  end
  local function add(id, sign)
    local stats = key('creator', id)
    redis.call('HINCRBY', stats, 'orders', sign)
    redis.call('HINCRBY', stats, 'revenue', sign * amount)
    if currency ~= '' then redis.call('HINCRBY', stats, 'rev:' .. currency, sign * amount) end
  end
  for id in pairs(want) do
    if not have[id] and redis.call('SADD', key('credited', id), order) == 1 then add(id, 1) end
  end
  for id in pairs(have) do
    if not want[id] and redis.call('SREM', key('credited', id), order) == 1 then add(id, -1) end
  end
  local list = {}
  for id in pairs(want) do list[#list + 1] = id end
  table.sort(list)
  if #list > 0 then
    redis.call('HSET', o, 'credited', table.concat(list, ','))
  else
    redis.call('HDEL', o, 'credited')
  end
end

-- settle_awaiting: the creator of a post (kind 'post') or of a repost (kind 'repost') is
-- now known: credit every order that was waiting for it. For a repost, post and author
-- also fill in the post side of orders that named only the repost.
local function settle_awaiting(kind, id, creator, post, author)
  local waiting = key('awaiting_' .. kind, id)
  if redis.call('EXISTS', waiting) == 0 then return end
  for _, order in ipairs(redis.call('SMEMBERS', waiting)) do
    local o = key('order', order)
    redis.call('HSET', o, 'cr_' .. kind, creator)
    if post and redis.call('HSETNX', o, 'vp', post) == 1 then
      redis.call('HSET', o, 'cr_post', author)
    end
    reconcile_credit(order)
  end
  redis.call('DEL', waiting)
end

-- Order statuses: the legal moves. cancelled and refunded are final.
local MOVES = {
  placed = { paid = true, cancelled = true },
  paid = { shipped = true, cancelled = true, refunded = true },
  shipped = { delivered = true, refunded = true },
  delivered = { refunded = true },
  cancelled = {},
  refunded = {},
}

-- derive_status: recompute an order's status, history and flags from every status event
-- received (fields 'ev:<event_id>' = 'status|seq|ts', seq -1 when absent), so the result
-- does not depend on arrival order. Events are taken by seq (by ts if any lacks one)
-- from 'placed'; a repeat of the current status is ignored; an illegal move is kept in
-- 'rej' with the flag illegal_transition and not applied.
local function derive_status(order)
  local o = key('order', order)
  local fields = redis.call('HGETALL', o)
  local events, start_ts, all_seq = {}, nil, true
  for i = 1, #fields, 2 do
    local name = fields[i]
    if string.sub(name, 1, 3) == 'ev:' then
      local status, seq, ts = string.match(fields[i + 1], '^([^|]*)|([^|]*)|(.*)$')
      seq, ts = tonumber(seq), tonumber(ts)
      if seq < 0 then all_seq = false end
      events[#events + 1] = { id = string.sub(name, 4), s = status, q = seq, t = ts }
    elseif name == 'ts' then
      start_ts = tonumber(fields[i + 1])
    end
  end
  table.sort(events, function(a, b)
    local ka, kb = all_seq and a.q or a.t, all_seq and b.q or b.t
    if ka ~= kb then return ka < kb end
    local ta, tb = all_seq and a.t or a.q, all_seq and b.t or b.q
    if ta ~= tb then return ta < tb end
    return a.id < b.id
  end)
  if not start_ts then start_ts = events[1] and events[1].t or 0 end
  local status, history, rejected = 'placed', { { 'placed', start_ts } }, {}
  for _, ev in ipairs(events) do
    if ev.s ~= status then
      if MOVES[status][ev.s] then
        status = ev.s
        history[#history + 1] = { ev.s, ev.t }
      else
        rejected[#rejected + 1] = { ev.s, ev.t, 'illegal_transition' }
      end
    end
  end
  redis.call('HSET', o, 'status', status, 'hist', cjson.encode(history),
    'rej', cjson.encode(rejected))
  if #rejected > 0 then
    redis.call('HSET', o, 'flags', 'illegal_transition')
  else
    redis.call('HDEL', o, 'flags')
  end
end
