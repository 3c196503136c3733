-- seed_codes.lua: put an offer's codes that are new in the campaigns file into its pool,
-- once each: the pool remembers how many of the file's codes it has seen, so restarts
-- add nothing and codes appended to the file later are added.
-- ARGV 8..: offer_id, code, ... (the codes in file order)
-- Returns the number of codes added.
local offer = ARGV[8]
local seen_key = key('gift_codes_seeded', offer)
local seen = tonumber(redis.call('GET', seen_key)) or 0
local total = #ARGV - 8
local added = 0
for i = seen + 1, total do
  redis.call('RPUSH', key('gift_codes', offer), ARGV[8 + i])
  added = added + 1
end
if total > seen then redis.call('SET', seen_key, total) end
return added
