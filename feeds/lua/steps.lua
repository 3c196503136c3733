-- steps.lua: the loop of the steps scripts, which run many calls of the slot-local steps
-- in one script call: a whole batch's calls of one node in order, instead of one EVALSHA
-- per entity and step (feeds/batch.py run_scripts). feeds/scripts.py steps_source()
-- makes two: the steps script (the LEAN scripts of feeds/scripts.py) puts this loop
-- after lib_key.lua's key helper (without its ARGV padding), lib_shop.lua and each
-- step's own source as the function STEPS[i]; the graph steps script (GRAPH_STEPS:
-- follow, backfill) after lib.lua and each step's source. Each step is called with an
-- ARGV of its own, its first seven values HEAD (the prefix and six pads for the steps
-- script, as lib_key.lua pads it; the seven settings for the graph steps script), so
-- each step reads its arguments from ARGV[8] as when it runs alone. The calls start at
-- ARGV[FIRST] (after the prefix, or after the seven settings).
-- Each call runs under pcall: a script error belongs to its call, as when the call runs
-- alone (its writes before the error stay, as they would), and the calls after it still
-- run. On a Redis Cluster a call that reaches a key its node does not serve (a slot
-- moving) stops the loop there: the answers so far are returned, and the caller runs that
-- call and the rest one by one, each on the node serving its slot (not redirected).
-- KEYS: key (the routing key of the first call: a cluster routes by it; never read)
-- ARGV: prefix, step, n, arg, ... (per call: the index of its step in STEPS, then n,
--       then its n own arguments: what ARGV[8] on holds when the step runs alone; the
--       graph steps script takes the seven settings in front instead of the prefix)
-- Returns one answer per call run (an error reply in place of a call that failed).
-- Per step, one ARGV table is reused by its calls (HEAD, then the call's arguments and
-- nothing after them: # and unpack see exactly the call's ARGV), and counts are turned
-- into numbers once per text (tonumber parses with strtod): about a fifth of a small
-- step's cost.
local out, k, i, last = {}, 0, FIRST, #ARGV
local tables, sizes = {}, {}
local number = setmetatable({}, { __index = function(cache, text)
  local value = tonumber(text)
  cache[text] = value
  return value
end })
while i <= last do
  local s, n = ARGV[i], number[ARGV[i + 1]]
  local step, args = STEPS[number[s]], tables[s]
  if not args then
    args = { HEAD[1], HEAD[2], HEAD[3], HEAD[4], HEAD[5], HEAD[6], HEAD[7] }
    tables[s], sizes[s] = args, 7
  end
  for j = 1, n do args[7 + j] = ARGV[i + 1 + j] end
  for j = 8 + n, sizes[s] do args[j] = nil end
  sizes[s] = 7 + n
  i = i + 2 + n
  local ok, result = pcall(step, args)
  if not ok then
    local message = type(result) == 'table' and result.err or tostring(result)
    if string.find(message, 'non local key', 1, true) then return out end
    result = { err = message }
  end
  k = k + 1
  if result == nil then result = false end -- a nil reply, as when the call runs alone
  out[k] = result
end
return out
