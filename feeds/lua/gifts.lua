-- gifts.lua: a batch's gifts decided in one call on a standalone Redis, where every key of
-- a gift is on one node (feeds/shop/gifts.py). feeds/scripts.py gifts_source() puts
-- lib_key.lua's key helper and the gift steps (GIFT_STEPS: gift_known, gift_claim,
-- gift_code, gift_release, gift_commit, gift_list), each its own source as the function
-- STEP.<name> of an ARGV of its own, in front of this loop; on a Redis Cluster the same
-- steps run one slot at a time instead, a batch's calls of each step together.
-- Each gift runs the steps in their order, one gift after another in the order given
-- (event time): its outcome if decided before; else the door (sender and recipient
-- suspended at the gift's time: lib_account.lua, put in front too), then, with no reason
-- to refuse it, a claim of a send and the offer's next code (an empty pool releases the
-- claim: the send no longer counts for the sender's later gifts), then the commit; an
-- accepted gift then enters the recipient's inbox and the sender's sent list.
-- Each gift runs under pcall: a script error belongs to its gift (its writes before the
-- error stay, as on a cluster) and the gifts after it still run.
-- ARGV: prefix, cap, gift_id, sender_id, recipient_id, offer_id, campaign_id, message, ts,
--       send_limit, codes, reasons, ... (per gift: codes is 1 when the offer has codes,
--       reasons those found without Redis, 'a,b' or '')
-- Returns per gift 'decision|reason,reason' as kept, or an error reply.
-- call(step, ...): runs STEP[step] on an ARGV padded as lib_key.lua pads a lean script's
-- (the prefix, then empty settings; made by gifts_source from the context's length).
local CAP, FIELDS = ARGV[2], 10

local function decide(gift, sender, recipient, offer, campaign, message, ts, limit, codes,
                      reasons)
  local kept = call('gift_known', gift)
  if kept == '' then
    local why, code = {}, ''
    if reasons ~= '' then why[1] = reasons end
    if suspended_at(sender, ts) then why[#why + 1] = 'suspended' end
    if suspended_at(recipient, ts) then why[#why + 1] = 'recipient_suspended' end
    if #why == 0 then
      if call('gift_claim', gift, sender, campaign, limit) == 'send_limit' then
        why[1] = 'send_limit'
      elseif codes == '1' then
        code = call('gift_code', offer, gift)
        if code == '-' then
          why[1], code = 'codes_exhausted', ''
          call('gift_release', gift, sender)
        else
          code = string.sub(code, 2)
        end
      end
    end
    kept = call('gift_commit', gift, sender, recipient, offer, campaign, message, code, ts,
      #why == 0 and 'accepted' or 'refused', table.concat(why, ','))
  end
  if string.sub(kept, 1, 9) == 'accepted|' then
    call('gift_list', 'gift_inbox', recipient, gift, ts, CAP)
    call('gift_list', 'gifts_sent', sender, gift, ts, CAP)
  end
  return kept
end

local out = {}
for i = 3, #ARGV, FIELDS do
  local ok, result = pcall(decide, unpack(ARGV, i, i + FIELDS - 1))
  if not ok then
    result = { err = type(result) == 'table' and result.err or tostring(result) }
  end
  out[#out + 1] = result
end
return out
