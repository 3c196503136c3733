-- hide.lua: block, mute, unblock or unmute, by event time: the latest block (mute) and
-- unblock (unmute) event times of the pair are kept, so any arrival order gives the same
-- state (lib.lua, hidden_at). A block or mute takes everything the target authored or
-- reposted before the latest unblock (all of it while blocked) out of the user's feeds,
-- and a block also takes the user's out of the target's: blocks protect in both
-- directions, mutes only change what the muter sees. The fan-out scripts skip hidden
-- pairs from then on; unblock and unmute end that for content of their time or later,
-- which they restore if it arrived first (lib.lua, restore); older content stays out.
-- ARGV 8..: action, user_id, target_id, ts
local action, user, target, ts = ARGV[8], ARGV[9], ARGV[10], ARGV[11]

local mute = action == 'mute' or action == 'unmute'
local kind = mute and 'mutes' or 'blocks'
local reverse = mute and 'muted_by' or 'blocked_by'
local on = action == 'block' or action == 'mute'
local value = latest_pair(key(kind, user), target, ts, on)
redis.call('HSET', key(kind, user), target, value)
redis.call('HSET', key(reverse, target), user, value)
local on_ts, off_ts = string.match(value, '^(%d*)|(%d*)$')
if on_ts ~= '' then
  local function gone(t) return hidden_at(value, t) end
  purge(user, target, gone, true)
  if not mute then purge(target, user, gone, true) end
  if off_ts ~= '' and tonumber(off_ts) >= tonumber(on_ts) then
    restore(user, target, off_ts)
    if not mute then restore(target, user, off_ts) end
  end
end
return 1
