-- order_forget.lua: the order-slot step that makes an order forget what it learnt from
-- post and repost records (a late suspension took some of them back: feeds/takeback.py),
-- so that reconciling it again learns afresh from the records as they are now: the
-- creators (cr_post, cr_repost) and the post learnt from the repost (vp when vpl marks
-- it learnt). The credits and conversions it holds stay in 'credited' and 'conv' until
-- that reconciliation rewrites them; they are returned, for the creators' steps to take
-- back first (so a crash anywhere leaves them to be found again).
-- ARGV 8..: order_id
-- Returns {amount, currency, then per action: kind ('credit' or 'convert'), creator,
-- field ('' for a credit)}.
local o = key('order', ARGV[8])
local f = redis.call('HMGET', o, 'credited', 'conv', 'vpl', 'amt', 'cur')
local out = { f[4] or '0', f[5] or '' }
local function add(kind, creator, field)
  out[#out + 1] = kind
  out[#out + 1] = creator
  out[#out + 1] = field
end
if f[1] then
  for creator in string.gmatch(f[1], '[^,]+') do add('credit', creator, '') end
end
if f[2] then
  for item in string.gmatch(f[2], '[^,]+') do
    local creator, field = string.match(item, '^([^:]*):(.*)$')
    if creator then add('convert', creator, field) end
  end
end
redis.call('HDEL', o, 'cr_post', 'cr_repost')
if f[3] then redis.call('HDEL', o, 'vp', 'vpl') end
return out
