-- gift.lua: decide a gift once and, if accepted, hand it over: spend one of the sender's
-- sends in the campaign, take the next code of the offer's pool (if it has one), and put
-- the gift in the recipient's inbox and the sender's sent list. Keyed by gift_id: a
-- redelivered or replayed gift returns its first outcome and changes nothing.
-- ARGV 8..: gift_id, sender_id, recipient_id, offer_id, campaign_id, message, ts,
--           send_limit, has_codes ('1'), reasons (found without Redis: 'a,b' or ''),
--           inbox_cap
-- Returns 'decision|reason,reason'.
local gift, sender, recipient, offer, campaign = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local message, ts, limit, has_codes = ARGV[13], ARGV[14], tonumber(ARGV[15]), ARGV[16] == '1'
local reasons_text, cap = ARGV[17], tonumber(ARGV[18])

local g = key('gift', gift)
local known = redis.call('HMGET', g, 'decision', 'reasons')
if known[1] then return known[1] .. '|' .. (known[2] or '') end

local reasons = {}
for reason in string.gmatch(reasons_text, '[^,]+') do reasons[#reasons + 1] = reason end
if suspended_at(sender, ts) then reasons[#reasons + 1] = 'suspended' end
if suspended_at(recipient, ts) then reasons[#reasons + 1] = 'recipient_suspended' end
local sends = key('gift_sends', sender)
local code = ''
if #reasons == 0 then
  if (tonumber(redis.call('HGET', sends, campaign)) or 0) >= limit then
    reasons[#reasons + 1] = 'send_limit'
  elseif has_codes then
    code = redis.call('LPOP', key('gift_codes', offer))
    if not code then
      code = ''
      reasons[#reasons + 1] = 'codes_exhausted'
    end
  end
end
local decision = #reasons == 0 and 'accepted' or 'refused'
local reason_list = table.concat(reasons, ',')
redis.call('HSET', g, 'sender', sender, 'recipient', recipient, 'offer', offer,
  'campaign', campaign, 'message', message, 'code', code, 'ts', ts, 'decision', decision,
  'reasons', reason_list)
if decision == 'accepted' then
  redis.call('HINCRBY', sends, campaign, 1)
  for _, list in ipairs({ key('gift_inbox', recipient), key('gifts_sent', sender) }) do
    redis.call('ZADD', list, ts, gift)
    redis.call('ZREMRANGEBYRANK', list, 0, -(cap + 1))
  end
end
return decision .. '|' .. reason_list
