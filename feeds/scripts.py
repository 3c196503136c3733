"""Lua scripts, loaded from ``lua/`` next to this file, and their declared arguments.

Each script gets ``lib.lua`` in front (``lib_key.lua``, key names only, for the
slot-local steps), and ``lib_shop.lua`` too for the scripts that touch orders or
attribution. The Python-Lua contract is declared once, here: every script's
``KEYS`` and ``ARGV`` names in order (:data:`SIGNATURES`), and the seven settings that
every script but ``page`` takes first (:data:`CONTEXT`, read by ``lib.lua``). Calls are
built by name with :func:`argv`, which refuses a missing or unknown name, and a unit test
checks each script's header comment (``-- ARGV 8..: a, b, ...``) against its declaration.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript

from .connection import AnyRedis, is_cluster

__all__ = [
    "CONTEXT",
    "GIFT_STEPS",
    "GRAPH_STEPS",
    "LEAN",
    "SCRIPT_NAMES",
    "SIGNATURES",
    "STEPS",
    "LeanScript",
    "Scripts",
    "Signature",
    "StepScript",
    "argv",
    "gifts_source",
    "source",
    "steps_source",
]

SCRIPT_NAMES = (
    "post",
    "repost",
    "repost_record",
    "unrepost",
    "delete_post",
    "follow",
    "purge",
    "backfill",
    "hide",
    "decide_post",
    "decide_user",
    "decide_commit",
    "page",
    "account",
    "gift_known",
    "gift_claim",
    "gift_code",
    "gift_release",
    "gift_commit",
    "gift_list",
    "seed_codes",
    "order_purchase",
    "order_event",
    "order_buyer",
    "order_facts",
    "order_repost",
    "order_post",
    "order_settle",
    "order_credit",
    "order_unwait",
    "order_forget",
    "release",
    "progress",
    "tag",
    "view",
    "deliver",
    "mark_read",
)
#: The settings every script's ARGV starts with, in order (``lib.lua``; see
#: :func:`feedamp.feeds.batch.context`).
CONTEXT = ("prefix", "buckets", "cap", "fy_cap", "half_life", "recent", "chunk")


@dataclass(frozen=True)
class Signature:
    """A script's declared arguments: ``keys`` (``KEYS``), ``args`` (``ARGV`` after
    :data:`CONTEXT`, or from ``ARGV[1]`` for a script without it), and ``more``: names
    repeated any number of times after them (``field, ts, field, ts, ...``)."""

    args: tuple[str, ...] = ()
    more: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    context: bool = True
    #: A slot-local step: ``lib_key.lua`` instead of ``lib.lua``, and of the context only
    #: the prefix goes over the wire (see :data:`LEAN`); it is declared, built and routed
    #: with the full context like every other script.
    lean: bool = False

    def index(self, name: str) -> int:
        """Position of ``name`` in a call's argv list (0-based, context included)."""
        return (len(CONTEXT) if self.context else 0) + self.args.index(name)


#: Every script's declaration. Keep each in step with the header of ``lua/<name>.lua``.
SIGNATURES: dict[str, Signature] = {
    "post": Signature(("post_id", "author_id", "ts", "visibility", "text", "media_url")),
    "repost": Signature(("post_id", "post_author_id", "reposter_id", "ts", "comment")),
    "repost_record": Signature(("repost_id", "reposter_id", "post_id", "post_author_id")),
    "unrepost": Signature(("post_id", "reposter_id")),
    "delete_post": Signature(("post_id", "author_id", "ts")),
    "follow": Signature(("follower_id", "followee_id", "ts", "on")),
    "hide": Signature(("kind", "owner_id", "other_id", "ts", "on")),
    "purge": Signature(("user_id", "target_id", "authored", "value", "n"),
                       more=("post_id", "author", "ts", "deleted")),
    "backfill": Signature(("user_id", "target_id", "mode"), more=("row",)),
    "decide_post": Signature(("post_id", "repost_id", "via_repost_id", "ts", "brake_window",
                              "door"), lean=True),
    "decide_user": Signature(("reposter_id", "repost_id", "ts", "rate_window", "forwarded",
                              "forwarded_window"), lean=True),
    "decide_commit": Signature(("post_id", "repost_id", "decision"), lean=True),
    "page": Signature(("max_score", "limit"), keys=("bucket", "..."), context=False),
    "account": Signature(("action", "user_id", "label", "ts"), lean=True),
    "gift_known": Signature(("gift_id",), lean=True),
    "gift_claim": Signature(("gift_id", "sender_id", "campaign_id", "send_limit"), lean=True),
    "gift_code": Signature(("offer_id", "gift_id"), lean=True),
    "gift_release": Signature(("gift_id", "sender_id"), lean=True),
    "gift_commit": Signature(("gift_id", "sender_id", "recipient_id", "offer_id", "campaign_id",
                              "message", "code", "ts", "decision", "reasons"), lean=True),
    "gift_list": Signature(("kind", "user_id", "gift_id", "ts", "cap"), lean=True),
    "seed_codes": Signature(("offer_id",), more=("code",), lean=True),
    "order_purchase": Signature(("order_id", "buyer_id", "product_id", "seller_id",
                                 "amount_cents", "currency", "via_post_id", "via_repost_id",
                                 "ts"), lean=True),
    "order_event": Signature(("order_id", "buyer_id", "status", "seq", "ts", "dedup_id"),
                             lean=True),
    "order_buyer": Signature(("buyer_id", "order_id", "ts", "purchase", "product_id"),
                             lean=True),
    "order_facts": Signature(("order_id",), lean=True),
    "order_repost": Signature(("repost_id", "order_id"), lean=True),
    "order_post": Signature(("post_id", "order_id", "product_id"), lean=True),
    "order_settle": Signature(("order_id", "reposter", "repost_post", "via_post_author",
                               "tagged"), lean=True),
    "order_credit": Signature(("creator_id", "order_id", "amount", "currency"),
                              more=("kind", "field", "want"), lean=True),
    "order_unwait": Signature(("kind", "id"), more=("order_id",), lean=True),
    "order_forget": Signature(("order_id",), lean=True),
    "release": Signature(("limit", "forced"), more=("field",)),
    "progress": Signature(more=("field", "ts")),
    "tag": Signature(("post_id", "author_id"), more=("product_id",), lean=True),
    "view": Signature(("user_id", "product_id", "ts", "via_post_id", "via_repost_id", "cap"),
                      lean=True),
    "deliver": Signature(("cutoff",), more=("e", "op", "post_id", "author_id", "ts",
                                            "reposter_id", "flags", "k", "event", "n",
                                            "follower_id"),
                         keys=("bucket", "...")),
    "mark_read": Signature(("now", "interval", "rebuild_grace", "done"), keys=("pair",),
                           context=False),
}  # fmt: skip


def argv(
    name: str, context: Sequence[str | int] = (), /, *more: str | int, **values: str | int
) -> list[str | int]:
    """The ARGV of a call of script ``name``: ``context`` (the :data:`CONTEXT` values, for
    a script that takes them), then ``values`` by declared name, then ``more`` (the
    repeated tail). TypeError for a missing or unknown name, or a tail the script does not
    take."""
    sig, n_context, pick = _BUILD[name]
    # The common case first: the context, no tail, every declared name given (as many
    # values as names, and each name found).
    if not more and len(values) == len(sig.args) and len(context) == n_context:
        try:
            picked = pick(values)
        except KeyError:
            pass
        else:
            built = list(context)
            if len(sig.args) == 1:
                built.append(picked)
            else:
                built += picked
            return built
    if len(context) != n_context:
        what = (
            f"needs the {len(CONTEXT)} context settings first"
            if sig.context
            else "takes no context"
        )
        raise TypeError(f"{name}: {what}")
    if more and (not sig.more or len(more) % len(sig.more)):
        raise TypeError(f"{name}: a tail of {len(more)} values, not groups of {sig.more}")
    # As many values as declared names, and each declared name given: the same names.
    if len(values) == len(sig.args):
        built = list(context)
        try:
            built += map(values.__getitem__, sig.args)
        except KeyError:
            pass
        else:
            built += more
            return built
    missing, unknown = set(sig.args) - set(values), set(values) - set(sig.args)
    raise TypeError(f"{name}: missing {sorted(missing)}, unknown {sorted(unknown)}")


#: Per script: its signature, how many context values it takes, and the getter of its
#: declared values from :func:`argv`'s keyword arguments (one value, or a tuple of them).
_BUILD: dict[str, tuple[Signature, int, Callable[[dict[str, Any]], Any]]] = {
    name: (sig, len(CONTEXT) if sig.context else 0, operator.itemgetter(*sig.args))
    for name, sig in SIGNATURES.items()
    if sig.args
}
_BUILD.update({name: (sig, len(CONTEXT) if sig.context else 0, lambda _: ())
               for name, sig in SIGNATURES.items() if not sig.args})  # fmt: skip

#: Scripts that take no shared settings and so run without ``lib.lua``.
STANDALONE = frozenset(n for n, sig in SIGNATURES.items() if not sig.context)
#: Scripts that need only key names: ``lib_key.lua`` goes in front instead of ``lib.lua``,
#: and of the seven settings only the prefix is sent (``lib_key.lua`` pads ARGV back, so
#: the script's own arguments keep their places from ARGV[8]): the steps of a batch are
#: many calls, each skips setting up the feed helpers and encoding six settings.
LEAN = frozenset(n for n, sig in SIGNATURES.items() if sig.lean)
#: Scripts that also need the order and attribution helpers.
SHOP = frozenset({"order_purchase", "order_event", "order_settle", "order_credit"})


#: The slot-local steps that the steps script runs (every :data:`LEAN` script), by index:
#: a call of the steps script names each of its calls' step by its place here.
STEPS: tuple[str, ...] = tuple(n for n in SCRIPT_NAMES if n in LEAN)


@cache
def source(name: str) -> str:
    """Full source of script ``name``: ``lib.lua`` (``lib_key.lua`` for the :data:`LEAN`
    ones, ``lib_shop.lua`` after it for :data:`SHOP`) followed by ``<name>.lua``; a
    ``#!lua`` shebang line of ``<name>.lua`` (script flags) stays the first line."""
    lua = files(__package__).joinpath("lua")
    body = lua.joinpath(f"{name}.lua").read_text()
    if name in STANDALONE:
        return body
    shebang = []
    if body.startswith("#!"):
        first, body = body.split("\n", 1)
        shebang = [first]
    libs = ["lib_key" if name in LEAN else "lib", *(["lib_shop"] if name in SHOP else [])]
    return "\n".join([*shebang, *(lua.joinpath(f"{lib}.lua").read_text() for lib in libs), body])


#: The slot-local steps that need ``lib.lua``'s feed helpers and all seven settings, by
#: index in the graph steps script (see :func:`steps_source`): a run of follows packs its
#: state steps, then its backfills, as the steps script packs the lean steps.
GRAPH_STEPS: tuple[str, ...] = ("follow", "backfill")


@cache
def steps_source(graph: bool = False) -> str:
    """Source of the steps script: many calls of the :data:`STEPS` in one script call
    (``lua/steps.lua``, whose header describes its ARGV). ``lib_key.lua``'s key helper
    (not its ARGV padding: each call's ARGV is padded by the loop), ``lib_shop.lua``, each
    step's own source as a function ``STEPS[i]`` of its ARGV, then the loop. Flagged
    ``allow-cross-slot-keys``: on a Redis Cluster one call runs the calls of every slot of
    its node (:func:`feedamp.feeds.batch.run_scripts` groups them by node).

    ``graph``: the graph steps script instead, many calls of the :data:`GRAPH_STEPS`:
    ``lib.lua`` (which reads the seven settings from the call's ARGV, sent once in front
    of the calls), each step's source as a function, then the same loop."""
    lua = files(__package__).joinpath("lua")
    if graph:
        names, libs = GRAPH_STEPS, [lua.joinpath("lib.lua").read_text()]
        head = ", ".join(f"ARGV[{n}]" for n in range(1, len(CONTEXT) + 1))
        first = len(CONTEXT) + 1
    else:
        names, libs = STEPS, [_key_helper(), lua.joinpath("lib_shop.lua").read_text()]
        head = ", ".join(["PREFIX"] + ["''"] * (len(CONTEXT) - 1))
        first = 2
    parts = ["#!lua flags=allow-cross-slot-keys", *libs, "local STEPS = {}"]
    for n, name in enumerate(names, 1):
        body = lua.joinpath(f"{name}.lua").read_text()
        parts.append(f"STEPS[{n}] = function(ARGV) -- {name}\n{body}\nend")
    parts.append(f"local HEAD, FIRST = {{ {head} }}, {first}")
    parts.append(lua.joinpath("steps.lua").read_text())
    return "\n".join(parts)


#: The gift steps that the gifts script runs for each gift, in one call on a standalone
#: Redis (see :func:`gifts_source`).
GIFT_STEPS: tuple[str, ...] = (
    "gift_known", "gift_claim", "gift_code", "gift_release", "gift_commit", "gift_list",
)  # fmt: skip


@cache
def gifts_source() -> str:
    """Source of the gifts script, which decides a batch's gifts every step of each in one
    call, where every key is on one node (a standalone Redis; ``lua/gifts.lua``, whose
    header describes its ARGV): ``lib_key.lua``'s key helper (without its ARGV padding),
    ``lib_account.lua`` (the door's rule), each of the :data:`GIFT_STEPS` as a function
    ``STEP.<name>`` of an ARGV of its own, ``call`` (a step on an ARGV padded as the
    steps script pads it, from :data:`CONTEXT`'s length), then the loop over the gifts."""
    lua = files(__package__).joinpath("lua")
    parts = [_key_helper(), lua.joinpath("lib_account.lua").read_text(), "local STEP = {}"]
    for name in GIFT_STEPS:
        body = lua.joinpath(f"{name}.lua").read_text()
        parts.append(f"STEP.{name} = function(ARGV) -- {name}\n{body}\nend")
    pad = ", ".join(["PREFIX"] + ["''"] * (len(CONTEXT) - 1))
    parts.append(f"local function call(step, ...) return STEP[step]({{ {pad}, ... }}) end")
    parts.append(lua.joinpath("gifts.lua").read_text())
    return "\n".join(parts)


def _key_helper() -> str:
    """``lib_key.lua`` without its padding of the script's ARGV: a script that calls the
    steps pads each call's ARGV itself."""
    lib_key = files(__package__).joinpath("lua").joinpath("lib_key.lua").read_text()
    return "\n".join(line for line in lib_key.splitlines()
                     if not line.startswith("local ARGV ="))  # fmt: skip


class Scripts:
    """The feed scripts registered on one client; attribute per script (``scripts.post``),
    and ``steps``, the script that runs many calls of the :data:`STEPS` at once (see
    :func:`steps_source`): each step script knows it (``.steps``) and its index in it
    (``.step``), so that :func:`~feedamp.feeds.batch.run_scripts` packs their calls."""

    post: AsyncScript
    repost: AsyncScript
    repost_record: AsyncScript
    unrepost: AsyncScript
    delete_post: AsyncScript
    follow: AsyncScript
    purge: AsyncScript
    backfill: AsyncScript
    hide: AsyncScript
    decide_post: AsyncScript
    decide_user: AsyncScript
    decide_commit: AsyncScript
    page: AsyncScript
    account: AsyncScript
    gift_known: AsyncScript
    gift_claim: AsyncScript
    gift_code: AsyncScript
    gift_release: AsyncScript
    gift_commit: AsyncScript
    gift_list: AsyncScript
    seed_codes: AsyncScript
    order_purchase: AsyncScript
    order_event: AsyncScript
    order_buyer: AsyncScript
    order_facts: AsyncScript
    order_repost: AsyncScript
    order_post: AsyncScript
    order_settle: AsyncScript
    order_credit: AsyncScript
    order_unwait: AsyncScript
    order_forget: AsyncScript
    release: AsyncScript
    progress: AsyncScript
    tag: AsyncScript
    view: AsyncScript
    deliver: AsyncScript
    mark_read: AsyncScript
    steps: Any
    #: The gifts script (:func:`gifts_source`) on a standalone Redis; None on a cluster,
    #: where a gift's keys lie in several slots and its steps run one slot at a time.
    gifts: AsyncScript | None

    def __init__(self, redis: AnyRedis) -> None:
        """Register every script on ``redis``; on a cluster each is a
        :class:`~feedamp.feeds.cluster.ClusterScript` (routed by a declared key)."""
        from .cluster import ClusterScript

        cluster = is_cluster(redis)
        steps = redis.register_script(steps_source())
        graph_steps = redis.register_script(steps_source(graph=True))
        self.steps = ClusterScript("steps", steps) if cluster else steps
        self.graph_steps = ClusterScript("graph_steps", graph_steps) if cluster else graph_steps
        self.gifts = None if cluster else redis.register_script(gifts_source())
        for name in SCRIPT_NAMES:
            script = redis.register_script(source(name))
            lean = name in LEAN
            if lean:
                step, packer, raw = STEPS.index(name) + 1, self.steps, steps
            elif name in GRAPH_STEPS:
                step, packer, raw = GRAPH_STEPS.index(name) + 1, self.graph_steps, graph_steps
            else:
                step, packer, raw = 0, None, None
            if cluster:
                setattr(self, name, ClusterScript(name, script, lean, step, packer))
            elif lean:
                setattr(self, name, LeanScript(script, step, raw))
            elif step:
                setattr(self, name, StepScript(script, step, raw))
            else:
                setattr(self, name, script)


class StepScript:
    """A step of the graph steps script (:data:`GRAPH_STEPS`) on a standalone Redis:
    called like any script, with the seven settings; it knows the steps script that
    runs many of its calls (``.steps``) and its index there (``.step``), and how many
    leading values of a call's ARGV a packed call sends once (``.head``: the settings)."""

    head = len(CONTEXT)

    def __init__(self, script: AsyncScript, step: int = 0, steps: Any = None) -> None:
        self.inner = script
        #: Its index in its steps script (from 1), and the steps script that runs it.
        self.step = step
        self.steps = steps

    @property
    def sha(self) -> str:
        """The SHA1 of the script's source."""
        return str(self.inner.sha)

    @property
    def script(self) -> Any:
        """The script's source."""
        return self.inner.script

    @staticmethod
    def wire(args: Sequence[Any]) -> list[Any]:
        """The ARGV sent for a call built with the full context (all of it)."""
        return list(args)

    async def __call__(
        self,
        keys: Sequence[str] | None = None,
        args: Sequence[Any] | None = None,
        client: Any = None,
    ) -> Any:
        """Run the script with ``args`` as built (full context), sending :meth:`wire`."""
        return await self.inner(keys=keys, args=self.wire(args or ()), client=client)


class LeanScript(StepScript):
    """A :data:`LEAN` script on a standalone Redis: called with the seven settings like
    every script, it sends only the first (the prefix); ``lib_key.lua`` pads ARGV back.
    :func:`~feedamp.feeds.batch.run_scripts` sends it as ``EVALSHA`` through :meth:`wire`."""

    head = 1

    @staticmethod
    def wire(args: Sequence[Any]) -> list[Any]:
        """The ARGV sent for a call built with the full context: the prefix, then the
        script's own arguments."""
        argv = list(args)
        return [argv[0], *argv[len(CONTEXT) :]]
