-- lib_key.lua: the one helper of lib.lua that the slot-local step scripts need (key names,
-- exactly as lib.lua builds them), prepended instead of lib.lua so that each of a batch's
-- many step calls does not set up the feed helpers it never uses.
-- The caller sends only the first of the seven settings every script's ARGV starts with
-- (the prefix); ARGV is padded back here so that the script's own arguments keep their
-- places (ARGV[8] on), as in every other script.
local ARGV = { ARGV[1], '', '', '', '', '', '', unpack(ARGV, 2) }
local PREFIX = ARGV[1]

local function key(kind, id)
  return PREFIX .. kind .. ':{' .. id .. '}'
end
