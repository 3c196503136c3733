-- hide.lua: block, mute, unblock or unmute. Blocking or muting removes everything the
-- target authored or reposted from the user's feeds, and the fan-out scripts skip the user
-- for the target's posts and reposts from then on; unblock and unmute end that for new
-- events (nothing is backfilled).
-- ARGV 8..: action, user_id, target_id
local action, user, target = ARGV[8], ARGV[9], ARGV[10]

local kind = ({ block = 'blocks', unblock = 'blocks', mute = 'mutes', unmute = 'mutes' })[action]
local reverse = kind == 'blocks' and 'blocked_by' or 'muted_by'
if action == 'block' or action == 'mute' then
  redis.call('SADD', key(kind, user), target)
  redis.call('SADD', key(reverse, target), user)
  purge(user, target, true)
else
  redis.call('SREM', key(kind, user), target)
  redis.call('SREM', key(reverse, target), user)
end
return 1
