-- lib_account.lua: the door's rule, after a key helper (lib.lua's or lib_key.lua's), for
-- the scripts that judge an account at an event's time: the gifts script
-- (feeds/scripts.py gifts_source).
-- suspended_at: true if user's account was suspended at event time ts (by the latest
-- suspension and reinstatement on record; feeds/accounts.py has the same rule).
local function suspended_at(user, ts)
  local state = redis.call('HMGET', key('account', user), 'susp', 'rein')
  if not state[1] then return false end
  local susp, rein = tonumber(state[1]), tonumber(state[2] or '-1')
  if tonumber(ts) < susp then return false end
  return not (rein >= susp and rein <= tonumber(ts))
end
