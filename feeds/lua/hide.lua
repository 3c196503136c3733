-- hide.lua: the state step of a block, mute, unblock or unmute, on one side's slot: the
-- latest block (mute) and unblock (unmute) event times of the pair, merged by event time
-- into that side's pair state (lib.lua, set_pair), so any arrival order gives the same
-- value. The store runs it on the user's side (blocks or mutes) and, for a block, on the
-- target's (blocked_by); both merge to the same value. A block or mute then takes
-- everything the target authored or reposted before the latest unblock (all of it while
-- blocked) out of the user's feeds, and a block also the user's out of the target's
-- (purge.lua); an unblock or unmute restores the content of its time or later that
-- arrived first (backfill.lua, restore).
-- ARGV 8..: kind (blocks, blocked_by, mutes), owner_id, other_id, ts, on ('1'/'0')
-- Returns the pair's value 'on|off'.
local kind, owner, other, ts, on = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12] == '1'

return set_pair(owner, other, kind, ts, on)
