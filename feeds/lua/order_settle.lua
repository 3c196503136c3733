-- order_settle.lua: the order-slot step that records what the creators' steps found and
-- returns what each creator should have (see order_settle in lib_shop.lua).
-- ARGV 8..: order_id, reposter ('' if unknown), repost_post (the repost's post, '' if
--           unknown), via_post_author ('' if unknown), tagged ('1', '0', '' unknown)
local tagged = nil
if ARGV[12] == '1' then tagged = true elseif ARGV[12] == '0' then tagged = false end
return order_settle(ARGV[8], ARGV[9], ARGV[10], ARGV[11], tagged)
