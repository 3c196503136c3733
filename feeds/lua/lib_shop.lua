-- lib_shop.lua: orders and purchase attribution, prepended (after lib.lua) to the order
-- steps that change an order or a creator's credits (feeds/shop/order_steps.py).
--
-- An order credits the author of its via_post and the reposter of its via_repost once
-- each (once per creator if both are the same person) while it is active: purchased and
-- neither cancelled nor refunded. Topics are not ordered against each other, so a creator
-- may become known after the purchase: the order then waits in awaiting_post /
-- awaiting_repost and is reconciled, by the same steps, when the post or repost is
-- recorded (post.lua, repost.lua and repost_record.lua return the orders waiting).

-- Conversions of tagged posts. An active order (purchased, neither cancelled nor refunded)
-- whose via_post tagged its product is a conversion of that post (credited to its author
-- in conversions:{author}, fields 'p:<post>' orders and 'p:<post>:rev' cents) and of its
-- via_repost once the reposter is known ('r:<repost>', 'r:<repost>:rev'). A post's tags
-- are known once tag.lua recorded it (field 'tg' of post:{p}); until then the order waits
-- in awaiting_tags:{post}.
--
-- Exactly once per order and creator: a credit is counted when the order joins the
-- creator's credited:{creator} set and taken back when it leaves it; a conversion the same
-- way with converted:{creator} (members '<order>|<field>'). Both sets live on the
-- creator's slot, so on a Redis Cluster each creator's step is slot-local
-- (feeds/shop/order_steps.py); the order keeps what it wants in 'credited' and 'conv'.

-- credit: make creator's credit for order what it should be (want), on the creator's slot.
local function credit(creator, order, want, amount, currency)
  local set = key('credited', creator)
  local sign = 0
  if want then
    if redis.call('SADD', set, order) == 1 then sign = 1 end
  elseif redis.call('SREM', set, order) == 1 then
    sign = -1
  end
  if sign == 0 then return end
  local stats = key('creator', creator)
  -- a field back at 0 goes, so a credit taken back leaves what was never credited
  local function add(field, by)
    if redis.call('HINCRBY', stats, field, by) == 0 then redis.call('HDEL', stats, field) end
  end
  add('orders', sign)
  add('revenue', sign * amount)
  if currency ~= '' then add('rev:' .. currency, sign * amount) end
end

-- convert: make the conversion field ('p:<post>' or 'r:<repost>') of creator for order
-- what it should be (want), on the creator's slot.
local function convert(creator, order, field, want, amount)
  local set = key('converted', creator)
  local member = order .. '|' .. field
  local sign = 0
  if want then
    if redis.call('SADD', set, member) == 1 then sign = 1 end
  elseif redis.call('SREM', set, member) == 1 then
    sign = -1
  end
  if sign == 0 then return end
  local stats = key('conversions', creator)
  if redis.call('HINCRBY', stats, field, sign) == 0 then redis.call('HDEL', stats, field) end
  if redis.call('HINCRBY', stats, field .. ':rev', sign * amount) == 0 then
    redis.call('HDEL', stats, field .. ':rev')
  end
end

-- order_settle: on the order's slot, record what was learnt of its creators (the
-- reposter and post of its via_repost, the author of its via_post) and whether its
-- via_post tags its product (true, false, or nil: tags unknown); keep the wanted credits
-- and conversions in 'credited' and 'conv'. Returns {amount, currency, then per creator
-- action: kind ('credit' or 'convert'), creator, field ('' for a credit), want ('1'/'0')}.
local function order_settle(order, reposter, repost_post, author, tagged)
  local o = key('order', order)
  if reposter and reposter ~= '' then redis.call('HSET', o, 'cr_repost', reposter) end
  -- the repost's post, when the purchase named none ('vpl': learnt, see order_forget.lua)
  if repost_post and repost_post ~= '' and redis.call('HSETNX', o, 'vp', repost_post) == 1 then
    redis.call('HSET', o, 'vpl', '1')
  end
  if author and author ~= '' then redis.call('HSET', o, 'cr_post', author) end
  local f = redis.call('HMGET', o, 'bought', 'status', 'prod', 'vp', 'vr', 'cr_post',
    'cr_repost', 'amt', 'cur')
  local active = f[1] == '1' and f[2] ~= 'cancelled' and f[2] ~= 'refunded'
  local flag = active and '1' or '0'
  local out, credited, seen = { f[8] or '0', f[9] or '' }, {}, {}
  for _, creator in ipairs({ f[6] or '', f[7] or '' }) do
    if creator ~= '' and not seen[creator] then
      seen[creator] = true
      for _, v in ipairs({ 'credit', creator, '', flag }) do out[#out + 1] = v end
      if active then credited[#credited + 1] = creator end
    end
  end
  table.sort(credited)
  if #credited > 0 then
    redis.call('HSET', o, 'credited', table.concat(credited, ','))
  else
    redis.call('HDEL', o, 'credited')
  end
  local converts = active and f[3] and f[4] and tagged == true
  local conv = {}
  local function conversion(creator, field)
    for _, v in ipairs({ 'convert', creator, field, converts and '1' or '0' }) do
      out[#out + 1] = v
    end
    if converts then conv[#conv + 1] = creator .. ':' .. field end
  end
  if f[4] and f[6] then conversion(f[6], 'p:' .. f[4]) end
  if f[5] and f[7] then conversion(f[7], 'r:' .. f[5]) end
  table.sort(conv)
  if #conv > 0 then
    redis.call('HSET', o, 'conv', table.concat(conv, ','))
  else
    redis.call('HDEL', o, 'conv')
  end
  return out
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
