-- gift_code.lua: the offer-slot step of a gift: the code handed to this gift, the next of
-- the offer's pool the first time, recorded in gift_code_of:{offer} (gift_id -> code) so
-- a redelivered gift gets the same code and the pool loses nothing twice.
-- ARGV 8..: offer_id, gift_id
-- Returns '+code', or '-' when the pool is empty (codes_exhausted).
local offer, gift = ARGV[8], ARGV[9]
local given = key('gift_code_of', offer)
local code = redis.call('HGET', given, gift)
if code then return '+' .. code end
code = redis.call('LPOP', key('gift_codes', offer))
if not code then return '-' end
redis.call('HSET', given, gift, code)
return '+' .. code
