-- account.lua: moderation state of an account, by event time: suspend, reinstate, label,
-- unlabel. The latest suspension and reinstatement are kept; a label's latest change wins.
-- Touches account:{user} only: the caller puts a suspended account in its shard of the
-- suspended index first (feeds/accounts.py).
-- ARGV 8..: action, user_id, label ('' if none), ts
-- Returns '1' when the account is suspended now (the caller then cleans the feeds its
-- posts and reposts reached), else '0'.
local action, user, label, ts = ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11])
local account = key('account', user)

local function latest(field, value)
  local current = redis.call('HGET', account, field)
  if not current or tonumber(string.match(current, '(%d+)$')) <= ts then
    redis.call('HSET', account, field, value)
  end
end

if action == 'suspend' then
  latest('susp', ts)
elseif action == 'reinstate' then
  latest('rein', ts)
elseif action == 'label' then
  latest('label:' .. label, '+' .. ts)
elseif action == 'unlabel' then
  latest('label:' .. label, '-' .. ts)
end
local state = redis.call('HMGET', account, 'susp', 'rein')
if state[1] and not (state[2] and tonumber(state[2]) >= tonumber(state[1])) then
  return '1'
end
return '0'
