"""The key schema: every key kind the Lua scripts build is one that ``Keys`` builds, and the
base prefix's own keys and globs come from ``Keys``."""

from __future__ import annotations

import inspect
import re
from importlib.resources import files

from feedamp.feeds.keys import Keys

#: ``key('<kind>', ...)`` or ``<x>key('<kind>', ...)`` in a script (a kind built by
#: concatenation, ``key('awaiting_' .. what, ...)``, is named whole elsewhere).
LUA_KIND = re.compile(r"key\('([a-z_]+)'\s*,")


def python_kinds() -> set[str]:
    """The kind of every view key ``Keys`` builds: ``<prefix><kind>:{<id>}...``."""
    keys = Keys("p:")
    kinds = set()
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        params = list(inspect.signature(method).parameters.values())
        if name.startswith("_") or any(p.annotation not in ("str", "int") for p in params):
            continue
        built = method(*[0 if p.annotation == "int" else "x" for p in params])
        if isinstance(built, str) and built.startswith("p:") and ":{" in built:
            kinds.add(built[2:].split(":{", 1)[0])
    return kinds


def test_every_kind_the_lua_builds_is_in_keys():
    lua = files("feedamp.feeds").joinpath("lua")
    built = set()
    for script in lua.iterdir():
        if script.name.endswith(".lua"):
            built |= set(LUA_KIND.findall(script.read_text()))
    assert built, "no key kinds found in the scripts"
    assert built - python_kinds() == set()


def test_base_keys_and_globs():
    keys = Keys("fa:")
    assert (keys.pointer(), keys.generation_counter()) == ("fa.active", "fa.generation")
    assert (keys.generation(3), keys.scratch("ab")) == ("fa.3:", "fa.sab:")
    assert Keys("fa").pointer() is None
    assert Keys("a*b:").feed_pattern() == "a\\*b:feed:{*}:*"
    assert Keys.tag(Keys("fa:").feed("alice", 3).encode()) == b"alice"
