-- lib_key.lua: the one helper of lib.lua that the slot-local step scripts need (key names,
-- exactly as lib.lua builds them), prepended instead of lib.lua so that each of a batch's
-- many step calls does not set up the feed helpers it never uses.
-- ARGV starts with the same seven settings as for every script; only the prefix is read.
local PREFIX = ARGV[1]

local function key(kind, id)
  return PREFIX .. kind .. ':{' .. id .. '}'
end
