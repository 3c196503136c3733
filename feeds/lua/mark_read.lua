-- mark_read.lua: a read marks its user active (feeds/dormancy.py), on the user's slot.
-- (Standalone: no lib.lua.) The mark is the ':read' field of pair:{user} (feeds/keys.py,
-- READ_FIELD): '<ms>' (the last read), '-<ms>' (fan-out skipped the user since that
-- read), '~<ms>' (a read started rebuilding the user's feeds then) or nothing (never read,
-- or not in this namespace).
-- KEYS: pair
-- ARGV: now (ms, wall time), interval (ms: a read time this recent is not rewritten),
--      rebuild_grace (ms: a rebuild started this recently is left to finish), done ('1':
--      the caller finished a rebuild)
-- Returns 1 when the caller must rebuild the user's feeds before answering (never read,
-- skipped by fan-out since the last read, or a rebuild that did not finish in time),
-- else 0. Writes at most once, and not at all for a read less than interval after the
-- recorded one.
local k, now = KEYS[1], tonumber(ARGV[1])
local seen = redis.call('HGET', k, ':read')
local mark = seen and string.byte(seen, 1)
if ARGV[4] == '1' then
  if mark == 126 then redis.call('HSET', k, ':read', ARGV[1]) end
  return 0
end
if mark == 126 then
  if now - tonumber(string.sub(seen, 2)) < tonumber(ARGV[3]) then return 0 end
elseif seen and mark ~= 45 then
  if now - tonumber(seen) >= tonumber(ARGV[2]) then redis.call('HSET', k, ':read', ARGV[1]) end
  return 0
end
redis.call('HSET', k, ':read', '~' .. ARGV[1])
return 1
