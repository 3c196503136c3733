"""The Python-Lua contract: each script's header declares the ``KEYS`` and ``ARGV`` that
``feeds/scripts.py`` declares for it, and calls are built by those names."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest
from feedamp.config import Settings
from feedamp.feeds.batch import context
from feedamp.feeds.scripts import (
    CONTEXT,
    GIFT_STEPS,
    GRAPH_STEPS,
    LEAN,
    SCRIPT_NAMES,
    SIGNATURES,
    STEPS,
    LeanScript,
    argv,
    gifts_source,
    source,
    steps_source,
)

LUA = files("feedamp.feeds").joinpath("lua")
#: ``-- ARGV 8..: a, b (note), c, ...`` or ``-- KEYS: a, ...``, continued on indented
#: comment lines.
HEADER = re.compile(r"^-- (ARGV(?: \d+\.\.)?|KEYS): (.*)$")


def header(name: str) -> dict[str, tuple[str, list[str]]]:
    """``{"ARGV" | "KEYS": (the word before the colon, [names, "..." for a tail])}``."""
    lines = LUA.joinpath(f"{name}.lua").read_text().splitlines()
    found: dict[str, tuple[str, list[str]]] = {}
    n = 1 if lines and lines[0].startswith("#!") else 0  # a shebang line of flags
    while n < len(lines) and lines[n].startswith("--"):
        match = HEADER.match(lines[n])
        n += 1
        if not match:
            continue
        body = match.group(2)
        while n < len(lines) and re.match(r"^--\s{3,}\S", lines[n]):
            body += " " + lines[n][2:].strip()
            n += 1
        body = re.sub(r"\([^()]*\)", "", body)  # notes in parentheses
        body = re.sub(r"(?<!\.)\.\s*$", "", body.strip())  # a sentence's full stop
        names = [part.strip() for part in body.split(",") if part.strip()]
        names = [] if names == ["none"] else names
        found[match.group(1).split()[0]] = (match.group(1), names)
    return found


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_header_matches_the_declaration(name):
    sig = SIGNATURES[name]
    found = header(name)
    where, names = found.get("ARGV", ("", []))
    first = f"ARGV {len(CONTEXT) + 1}.." if sig.context else "ARGV"
    declared = [*sig.args, *sig.more] + (["..."] if sig.more else [])
    assert (where, names) == (first, declared)
    assert found.get("KEYS", ("KEYS", []))[1] == list(sig.keys)


def test_every_script_is_declared():
    on_disk = {p.name[:-4] for p in LUA.iterdir() if p.name.endswith(".lua")}
    drivers = {"lib", "lib_key", "lib_shop", "lib_account", "steps", "gifts"}
    assert on_disk - drivers == set(SCRIPT_NAMES) == set(SIGNATURES)


def test_lib_reads_the_declared_context():
    lib = LUA.joinpath("lib.lua").read_text()
    read = re.findall(r"^local (\w+) = .*ARGV\[(\d+)\]", lib, re.MULTILINE)
    assert [(v.lower(), int(i)) for v, i in read] == [(c, i + 1) for i, c in enumerate(CONTEXT)]
    assert len(context(Settings())) == len(CONTEXT)


def test_calls_are_built_by_name():
    ctx = context(Settings())
    built = argv("follow", ctx, ts=5, on="1", followee_id="b", follower_id="a")
    assert built == [*ctx, "a", "b", 5, "1"]
    assert argv("seed_codes", ctx, "c1", "c2", offer_id="o") == [*ctx, "o", "c1", "c2"]
    assert argv("page", max_score="+inf", limit=5) == ["+inf", 5]
    with pytest.raises(TypeError, match="missing"):
        argv("follow", ctx, follower_id="a", ts=5, on="1")
    with pytest.raises(TypeError, match="unknown"):
        argv("follow", ctx, follower_id="a", followee_id="b", ts=5, on="1", extra=1)
    with pytest.raises(TypeError, match="groups"):
        argv("progress", ctx, "field-only")


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_is_built_in_declared_order_whatever_order_the_names_come_in(name):
    sig = SIGNATURES[name]
    ctx = context(Settings()) if sig.context else []
    values = {arg: f"v{n}" for n, arg in enumerate(sig.args)}
    backwards = dict(reversed(values.items()))
    tail = [f"t{n}" for n in range(2 * len(sig.more))]
    assert argv(name, ctx, **backwards) == [*ctx, *values.values()]
    assert argv(name, ctx, *tail, **backwards) == [*ctx, *values.values(), *tail]
    if sig.args:
        with pytest.raises(TypeError, match="missing"):
            argv(name, ctx, **dict(list(values.items())[1:]))
        renamed = {**dict(list(values.items())[1:]), "not_declared": 1}
        with pytest.raises(TypeError, match=rf"missing \['{sig.args[0]}'\], unknown"):
            argv(name, ctx, **renamed)
    with pytest.raises(TypeError, match="context"):
        argv(name, [*ctx, "one too many"], **values)


def test_lean_scripts_send_the_prefix_and_keep_their_argv_places():
    # A lean step is declared and built with the full context (its header says ARGV 8..),
    # sends only the prefix, and lib_key.lua pads ARGV back to the declared places.
    assert {"decide_post", "gift_claim", "order_credit", "tag"} <= LEAN
    ctx = context(Settings())
    built = argv("gift_code", ctx, offer_id="o", gift_id="g")
    assert built == [*ctx, "o", "g"]
    assert LeanScript.wire(built) == [ctx[0], "o", "g"]
    lib_key = LUA.joinpath("lib_key.lua").read_text()
    pad = re.search(r"^local ARGV = \{ ARGV\[1\], (.*), unpack\(ARGV, 2\) \}$", lib_key, re.M)
    assert pad is not None and pad.group(1).split(", ") == ["''"] * (len(CONTEXT) - 1)
    assert all(source(n).startswith(lib_key) for n in LEAN)


def test_the_steps_script_holds_every_lean_step_once():
    # Calls of the slot-local steps are packed into calls of the steps script, which
    # names each call's step by its index in STEPS: every lean script, in order, each
    # its own source as a function of a padded ARGV (as lib_key.lua pads it alone).
    assert set(STEPS) == LEAN and len(STEPS) == len(LEAN)
    text = steps_source()
    assert text.startswith("#!lua flags=allow-cross-slot-keys\n")
    found = re.findall(r"^STEPS\[(\d+)\] = function\(ARGV\) -- (\w+)$", text, re.M)
    assert found == [(str(n), name) for n, name in enumerate(STEPS, 1)]
    for name in STEPS:
        assert LUA.joinpath(f"{name}.lua").read_text() in text
    # The key helper once, and not lib_key.lua's padding of the whole ARGV (the loop pads
    # each call's own ARGV).
    assert text.count("local function key(kind, id)") == 1
    assert "unpack(ARGV, 2)" not in text
    # The loop's header declares its arguments as the scripts' headers do.
    assert header("steps") == {"KEYS": ("KEYS", ["key"]),
                               "ARGV": ("ARGV", ["prefix", "step", "n", "arg", "..."])}  # fmt: skip
    loop = LUA.joinpath("steps.lua").read_text()
    assert text.endswith(loop) and "local pad" not in loop
    # Each call's ARGV starts as lib_key.lua pads it: the prefix, then empty settings;
    # the calls start after the prefix.
    pad = re.search(r"^local HEAD, FIRST = \{ PREFIX, (.*) \}, 2$", text, re.M)
    assert pad is not None and pad.group(1).split(", ") == ["''"] * (len(CONTEXT) - 1)
    assert re.search(r"args = \{ HEAD\[1\], .*, HEAD\[7\] \}", loop)


def test_the_graph_steps_script_holds_the_graph_steps_after_lib_lua():
    # The state step of a follow and the backfill need lib.lua's feed helpers: their
    # calls are packed into the graph steps script, which reads the seven settings once
    # (lib.lua, from the packed call's ARGV) and hands each call all seven in front.
    assert set(GRAPH_STEPS) == {"follow", "backfill"} and not set(GRAPH_STEPS) & LEAN
    text = steps_source(graph=True)
    lib = LUA.joinpath("lib.lua").read_text()
    assert text.startswith("#!lua flags=allow-cross-slot-keys\n" + lib)
    found = re.findall(r"^STEPS\[(\d+)\] = function\(ARGV\) -- (\w+)$", text, re.M)
    assert found == [(str(n), name) for n, name in enumerate(GRAPH_STEPS, 1)]
    for name in GRAPH_STEPS:
        assert LUA.joinpath(f"{name}.lua").read_text() in text
    head = re.search(r"^local HEAD, FIRST = \{ (.*) \}, (\d+)$", text, re.M)
    assert head is not None
    assert head.group(1).split(", ") == [f"ARGV[{n}]" for n in range(1, len(CONTEXT) + 1)]
    assert int(head.group(2)) == len(CONTEXT) + 1
    assert text.endswith(LUA.joinpath("steps.lua").read_text())


def test_the_gifts_script_holds_each_gift_step_once():
    # On a standalone Redis a batch's gifts run every step of each in one call: the gift
    # steps' own sources as functions of a padded ARGV, the key helper once and no
    # padding of the whole ARGV, then the loop, whose header says what a gift sends.
    assert set(GIFT_STEPS) <= LEAN and {n for n in SCRIPT_NAMES if n.startswith("gift_")} == set(
        GIFT_STEPS
    )
    text = gifts_source()
    found = re.findall(r"^STEP\.(\w+) = function\(ARGV\) -- (\w+)$", text, re.M)
    assert found == [(name, name) for name in GIFT_STEPS]
    for name in GIFT_STEPS:
        assert LUA.joinpath(f"{name}.lua").read_text() in text
    assert text.count("local function key(kind, id)") == 1
    assert "unpack(ARGV, 2)" not in text
    # The door's rule once, from lib_account.lua (lib.lua holds no copy of it).
    assert LUA.joinpath("lib_account.lua").read_text() in text
    assert text.count("local function suspended_at(") == 1
    # Each step's ARGV padded as lib_key.lua pads a lean script's: the prefix, then empty
    # settings.
    pad = re.search(r"^local function call\(step, \.\.\.\) return STEP\[step\]\(\{ PREFIX, "
                    r"(.*), \.\.\. \}\) end$", text, re.M)  # fmt: skip
    assert pad is not None and pad.group(1).split(", ") == ["''"] * (len(CONTEXT) - 1)
    assert "suspended_at" not in LUA.joinpath("lib.lua").read_text()
    per_gift = ["gift_id", "sender_id", "recipient_id", "offer_id", "campaign_id", "message",
                "ts", "send_limit", "codes", "reasons"]  # fmt: skip
    assert header("gifts") == {"ARGV": ("ARGV", ["prefix", "cap", *per_gift, "..."])}
    assert re.search(rf"^local CAP, FIELDS = ARGV\[2\], {len(per_gift)}$", text, re.M)
