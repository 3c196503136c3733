"""The gift and order stores of a batch run at once (``_together`` in
``streams/pipeline.py``) because they touch no key in common: derived here from the code,
not listed by hand, so a change that makes them share a key kind fails.

A store's key kinds are those of the Lua scripts it calls (every call is built by name
with :func:`feedamp.feeds.scripts.argv`, or names the script on its registered scripts)
and of the :class:`~feedamp.feeds.keys.Keys` names its Python reads or writes itself, in
the store's module and the ``feedamp.feeds.shop`` modules it imports. A script's kinds are
the literal ``key('<kind>', ...)`` of its own source and of the library functions it
calls (``lib_shop.lua``, ``lib.lua``), and, for a key whose kind is an argument (declared
``kind`` in :data:`~feedamp.feeds.scripts.SIGNATURES`), every key kind the store's
modules name as a string or through :data:`~feedamp.feeds.keys.Awaiting`. Read or written
alike: more than the stores' concurrency needs (a kind only read by both would be safe),
so a kind that comes to be read by both is a choice to state here.

The same derivation checks :data:`~feedamp.feeds.cluster.ROUTE_ONLY`, the scripts whose
cluster calls may follow ``ASK`` to a node importing their slot: each builds one key
alone, its routing key.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from functools import cache
from importlib.resources import files
from typing import get_args

import pytest
from feedamp.feeds.cluster import ROUTE_ONLY, ROUTES
from feedamp.feeds.keys import Awaiting, Keys
from feedamp.feeds.scripts import LEAN, SCRIPT_NAMES, SHOP, SIGNATURES, STANDALONE
from feedamp.feeds.shop.gifts import GiftStore
from feedamp.feeds.shop.orders import OrderStore

LUA = files("feedamp.feeds").joinpath("lua")
SHOP_PACKAGE = "feedamp.feeds.shop"
#: A key built in Lua: ``key('<kind>', ...)`` or ``key(ARGV[<n>], ...)``.
LUA_KEY = re.compile(r"\bkey\(\s*(?:'(\w+)'|ARGV\[(\d+)\])")
#: A script's own arguments start at ARGV[8] (after the seven settings of lib.lua).
OWN = 8


@cache
def key_kinds() -> dict[str, frozenset[str]]:
    """Every :class:`Keys` method that names a key of the namespace -> the kinds it can
    name (``awaiting``: each :data:`Awaiting` kind)."""
    keys, out = Keys("p:"), {}
    for name, method in inspect.getmembers(Keys, inspect.isfunction):
        if name.startswith("_"):
            continue
        params = list(inspect.signature(method).parameters.values())[1:]
        if [p.name for p in params][:1] == ["kind"]:
            choices = [(kind, *["x"] * (len(params) - 1)) for kind in get_args(Awaiting)]
        else:
            choices = [tuple(0 if p.annotation == "int" else "x" for p in params)]
        found = set()
        for args in choices:
            try:
                built = getattr(keys, name)(*args)
            except (TypeError, ValueError):
                break
            match = re.match(r"^p:(\w+):\{", built) if isinstance(built, str) else None
            if match:
                found.add(match.group(1))
        if found:
            out[name] = frozenset(found)
    return out


def all_kinds() -> frozenset[str]:
    return frozenset().union(*key_kinds().values())


def lua_code(text: str) -> str:
    """Lua source without its comments."""
    return re.sub(r"--.*", "", text)


def lua_functions(lib: str) -> dict[str, str]:
    """``local function <name>`` of a library -> its text (to the next one)."""
    text = lua_code(LUA.joinpath(f"{lib}.lua").read_text())
    parts = re.split(r"^local function (\w+)\(", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def script_keys(name: str) -> tuple[frozenset[str], frozenset[str]]:
    """The literal key kinds script ``name`` touches (its own source and the library
    functions it calls, transitively), and the names of the arguments that give a kind."""
    libs = [] if name in STANDALONE else ["lib_key" if name in LEAN else "lib"]
    libs += ["lib_shop"] if name in SHOP else []
    functions = {f: body for lib in libs for f, body in lua_functions(lib).items()
                 if f != "key"}  # fmt: skip
    todo, seen = [lua_code(LUA.joinpath(f"{name}.lua").read_text())], set()
    literal, arguments = set(), set()
    while todo:
        text = todo.pop()
        # every key is built by the key helper, with a literal kind or an argument's
        found = LUA_KEY.findall(text)
        assert len(found) == len(re.findall(r"\bkey\(", text)), f"{name}: a key built otherwise"
        assert "PREFIX" not in text, f"{name}: a key name built by hand"
        for kind, index in found:
            if kind:
                literal.add(kind)
            else:
                sig = SIGNATURES[name]
                arguments.add(sig.args[int(index) - OWN])
        for f, body in functions.items():
            if f not in seen and re.search(rf"\b{f}\(", text):
                seen.add(f)
                todo.append(body)
    return frozenset(literal), frozenset(arguments)


def modules_of(store: type) -> list[str]:
    """The store's module and the shop modules it imports, transitively."""
    out, todo = [], [store.__module__]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.append(name)
        tree = ast.parse(inspect.getsource(sys.modules[name]))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(SHOP_PACKAGE):
                importlib.import_module(node.module or "")
                todo.append(node.module or "")
    return out


def store_keys(store: type) -> tuple[set[str], set[str]]:
    """The scripts ``store`` calls and every key kind it touches."""
    kinds_of, scripts, kinds, named = key_kinds(), set(), set(), set()
    awaiting = False
    for module in modules_of(store):
        source = inspect.getsource(sys.modules[module])
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "argv" and node.args
                    and isinstance(node.args[0], ast.Constant)):  # fmt: skip
                scripts.add(node.args[0].value)
            elif isinstance(node, ast.Attribute):
                base = node.value
                owner = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if owner in ("sc", "scripts") and node.attr in SCRIPT_NAMES:
                    scripts.add(node.attr)
                if owner == "keys" and node.attr in kinds_of:
                    kinds |= kinds_of[node.attr]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                named.add(node.value)
            elif isinstance(node, ast.Name) and node.id == "Awaiting":
                awaiting = True
    named = (named & all_kinds()) | (set(get_args(Awaiting)) if awaiting else set())
    for name in scripts:
        literal, arguments = script_keys(name)
        kinds |= literal
        if arguments:
            assert arguments == {"kind"}, (name, arguments)
            assert named, f"{name} takes a key kind, and the store names none"
            kinds |= named
    return scripts, kinds


@pytest.mark.parametrize("store", [GiftStore, OrderStore])
def test_the_derivation_sees_each_stores_scripts_and_keys(store):
    # Not vacuous: each store calls step scripts, each script touches keys, and every
    # kind found is a key the namespace has (keys.py builds it).
    scripts, kinds = store_keys(store)
    assert scripts and scripts <= set(SCRIPT_NAMES)
    for name in scripts:
        literal, arguments = script_keys(name)
        assert literal or arguments, name
    assert kinds and kinds <= all_kinds()


def test_the_derivation_follows_library_calls_and_kind_arguments():
    # order_credit builds no key itself: its kinds are those of lib_shop's credit and
    # convert; gift_list's kind is its first argument.
    literal, arguments = script_keys("order_credit")
    assert "key(" not in LUA.joinpath("order_credit.lua").read_text()
    functions = lua_functions("lib_shop")
    assert literal == {k for f in ("credit", "convert") for k, _ in
                       LUA_KEY.findall(functions[f])} and not arguments  # fmt: skip
    assert script_keys("gift_list") == (frozenset(), frozenset({"kind"}))


def test_the_gift_and_order_stores_share_no_key_kind():
    gift_scripts, gift_kinds = store_keys(GiftStore)
    order_scripts, order_kinds = store_keys(OrderStore)
    assert not gift_scripts & order_scripts, "a script both stores call"
    assert not gift_kinds & order_kinds, f"key kinds both stores touch: {gift_kinds & order_kinds}"


#: A whole key built in Lua (its kind and id expressions), to tell one key from several.
LUA_WHOLE_KEY = re.compile(r"\bkey\(([^()]*(?:\([^()]*\)[^()]*)*)\)")


def script_key_texts(name: str) -> frozenset[str]:
    """Every distinct ``key(...)`` expression of script ``name`` and of the library
    functions it calls, transitively (as :func:`script_keys` walks them)."""
    libs = [] if name in STANDALONE else ["lib_key" if name in LEAN else "lib"]
    libs += ["lib_shop"] if name in SHOP else []
    functions = {f: body for lib in libs for f, body in lua_functions(lib).items()
                 if f != "key"}  # fmt: skip
    todo, seen, found = [lua_code(LUA.joinpath(f"{name}.lua").read_text())], set(), set()
    while todo:
        text = todo.pop()
        found |= {" ".join(m.split()) for m in LUA_WHOLE_KEY.findall(text)}
        for f, body in functions.items():
            if f not in seen and re.search(rf"\b{f}\(", text):
                seen.add(f)
                todo.append(body)
    return frozenset(found)


@pytest.mark.parametrize("name", sorted(ROUTE_ONLY))
def test_a_route_only_script_touches_its_routing_key_alone(name):
    # A call of a ROUTE_ONLY script may follow ASK to a node importing its slot (Redis
    # checks the one key it declares), so it must build exactly one key, of its route's
    # kind: a second key of the tag, undeclared, would read as absent there.
    assert name in ROUTES
    literal, arguments = script_keys(name)
    texts = script_key_texts(name)
    assert len(texts) == 1, f"{name} builds several keys: {sorted(texts)}"
    assert len(literal) + len(arguments) == 1, (name, literal, arguments)
