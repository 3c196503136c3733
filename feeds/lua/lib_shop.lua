-- lib_shop.lua: orders and purchase attribution, prepended (after lib.lua) to the scripts
-- that change an order or can learn who a purchase credits: purchase, order_status, post,
-- repost and tag.
--
-- An order credits the author of its via_post and the reposter of its via_repost once
-- each (once per creator if both are the same person) while it is active: purchased and
-- neither cancelled nor refunded. Topics are not ordered against each other, so a creator
-- may become known after the purchase: the order then waits in awaiting_post /
-- awaiting_repost and is credited when the post or repost is recorded.

-- Conversions of tagged posts. An active order (purchased, neither cancelled nor refunded)
-- whose via_post tagged its product is a conversion of that post (credited to its author
-- in conversions:{author}, fields 'p:<post>' orders and 'p:<post>:rev' cents) and of its
-- via_repost once the reposter is known ('r:<repost>', 'r:<repost>:rev'). A post's tags
-- are known once tag.lua recorded it (field 'tg' of post:{p}); until then the order waits
-- in awaiting_tags:{post}. What is counted lives in the order (field 'conv', entries
-- '<creator>:<p|r>:<id>'), so reconciling again changes nothing.
local function conversion_add(entry, amount, sign)
  local creator, field = string.match(entry, '^([^:]+):(.*)$')
  local stats = key('conversions', creator)
  if redis.call('HINCRBY', stats, field, sign) == 0 then redis.call('HDEL', stats, field) end
  if redis.call('HINCRBY', stats, field .. ':rev', sign * amount) == 0 then
    redis.call('HDEL', stats, field .. ':rev')
  end
end

-- reconcile_conversion: make the conversions counted for order match what they should be,
-- and remember the product among those the buyer bought (bought:{buyer}).
local function reconcile_conversion(order)
  local o = key('order', order)
  local f = redis.call('HMGET', o, 'bought', 'status', 'b', 'prod', 'vp', 'vr', 'cr_repost',
    'amt', 'conv')
  local bought, status, buyer, product, vp, vr, reposter = f[1] == '1', f[2], f[3], f[4], f[5],
      f[6], f[7]
  local amount = tonumber(f[8] or '0')
  if bought and buyer and product then redis.call('SADD', key('bought', buyer), product) end
  local want, have = {}, {}
  if bought and product and vp and status ~= 'cancelled' and status ~= 'refunded' then
    local post = redis.call('HMGET', key('post', vp), 'tg', 'a')
    if not post[1] then
      redis.call('SADD', key('awaiting_tags', vp), order)
    elseif redis.call('SISMEMBER', key('products', vp), product) == 1 then
      if post[2] then want[post[2] .. ':p:' .. vp] = true end
      if vr and reposter then want[reposter .. ':r:' .. vr] = true end
    end
  end
  if f[9] then
    for entry in string.gmatch(f[9], '[^,]+') do have[entry] = true end
  end
  local list = {}
  for entry in pairs(want) do
    list[#list + 1] = entry
    if not have[entry] then conversion_add(entry, amount, 1) end
  end
  for entry in pairs(have) do
    if not want[entry] then conversion_add(entry, amount, -1) end
  end
  table.sort(list)
  if #list > 0 then
    redis.call('HSET', o, 'conv', table.concat(list, ','))
  else
    redis.call('HDEL', o, 'conv')
  end
end

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
  reconcile_conversion(order)
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
