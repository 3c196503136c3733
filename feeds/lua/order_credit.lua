-- order_credit.lua: the creator-slot step of an order: make the creator's credit and
-- conversions for the order what order_settle said (credited:{creator} and
-- converted:{creator} make each change once).
-- ARGV 8..: creator_id, order_id, amount, currency, kind ('credit' or 'convert'),
--           field ('' for a credit), want ('1'/'0'), ... (one triple per action)
local creator, order, amount, currency = ARGV[8], ARGV[9], tonumber(ARGV[10]), ARGV[11]
for i = 12, #ARGV, 3 do
  if ARGV[i] == 'credit' then
    credit(creator, order, ARGV[i + 2] == '1', amount, currency)
  else
    convert(creator, order, ARGV[i + 1], ARGV[i + 2] == '1', amount)
  end
end
return 1
