"""Lua scripts, loaded from ``lua/`` next to this file, and their declared arguments.

Each script gets ``lib.lua`` in front (and ``lib_shop.lua`` too, for the scripts that touch
orders or attribution). The Python-Lua contract is declared once, here: every script's
``KEYS`` and ``ARGV`` names in order (:data:`SIGNATURES`), and the seven settings that
every script but ``page`` takes first (:data:`CONTEXT`, read by ``lib.lua``). Calls are
built by name with :func:`argv`, which refuses a missing or unknown name, and a unit test
checks each script's header comment (``-- ARGV 8..: a, b, ...``) against its declaration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from redis.commands.core import AsyncScript

from .connection import AnyRedis, is_cluster

__all__ = [
    "CONTEXT",
    "SCRIPT_NAMES",
    "SIGNATURES",
    "Scripts",
    "Signature",
    "argv",
    "source",
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
    "decide",
    "page",
    "account",
    "gift",
    "seed_codes",
    "purchase",
    "order_status",
    "release",
    "progress",
    "tag",
    "view",
    "deliver",
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
    "decide": Signature(("post_id", "repost_id", "reposter_id", "via_repost_id", "ts",
                         "has_comment", "frequently_forwarded_depth", "rate_max",
                         "rate_window", "forwarded_max", "forwarded_window", "brake_reposts",
                         "brake_window", "friction", "door")),
    "page": Signature(("max_score", "limit"), keys=("bucket", "..."), context=False),
    "account": Signature(("action", "user_id", "label", "ts")),
    "gift": Signature(("gift_id", "sender_id", "recipient_id", "offer_id", "campaign_id",
                       "message", "ts", "send_limit", "has_codes", "reasons", "inbox_cap")),
    "seed_codes": Signature(("offer_id",), more=("code",)),
    "purchase": Signature(("order_id", "buyer_id", "product_id", "seller_id", "amount_cents",
                           "currency", "via_post_id", "via_repost_id", "ts")),
    "order_status": Signature(("order_id", "buyer_id", "status", "seq", "ts", "dedup_id")),
    "release": Signature(("limit", "forced"), more=("field",)),
    "progress": Signature(more=("field", "ts")),
    "tag": Signature(("post_id", "author_id"), more=("product_id",)),
    "view": Signature(("user_id", "product_id", "ts", "via_post_id", "via_repost_id", "cap")),
    "deliver": Signature(more=("op", "post_id", "author_id", "ts", "reposter_id", "flags", "n",
                               "follower_id"), keys=("bucket", "...")),
}  # fmt: skip


def argv(
    name: str, context: Sequence[str | int] = (), /, *more: str | int, **values: str | int
) -> list[str | int]:
    """The ARGV of a call of script ``name``: ``context`` (the :data:`CONTEXT` values, for
    a script that takes them), then ``values`` by declared name, then ``more`` (the
    repeated tail). TypeError for a missing or unknown name, or a tail the script does not
    take."""
    sig = SIGNATURES[name]
    if sig.context and len(context) != len(CONTEXT):
        raise TypeError(f"{name}: needs the {len(CONTEXT)} context settings first")
    if not sig.context and context:
        raise TypeError(f"{name}: takes no context")
    if set(values) != set(sig.args):
        missing, unknown = set(sig.args) - set(values), set(values) - set(sig.args)
        raise TypeError(f"{name}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    if more and (not sig.more or len(more) % len(sig.more)):
        raise TypeError(f"{name}: a tail of {len(more)} values, not groups of {sig.more}")
    return [*context, *(values[n] for n in sig.args), *more]


#: Scripts that take no shared settings and so run without ``lib.lua``.
STANDALONE = frozenset(n for n, sig in SIGNATURES.items() if not sig.context)
#: Scripts that also need the order and attribution helpers.
SHOP = frozenset({"post", "repost", "repost_record", "purchase", "order_status", "tag"})


@cache
def source(name: str) -> str:
    """Full source of script ``name``: ``lib.lua`` followed by ``<name>.lua``; a ``#!lua``
    shebang line of ``<name>.lua`` (script flags) stays the first line."""
    lua = files(__package__).joinpath("lua")
    body = lua.joinpath(f"{name}.lua").read_text()
    if name in STANDALONE:
        return body
    shebang = []
    if body.startswith("#!"):
        first, body = body.split("\n", 1)
        shebang = [first]
    libs = ["lib", "lib_shop"] if name in SHOP else ["lib"]
    return "\n".join([*shebang, *(lua.joinpath(f"{lib}.lua").read_text() for lib in libs), body])


class Scripts:
    """The feed scripts registered on one client; attribute per script (``scripts.post``)."""

    post: AsyncScript
    repost: AsyncScript
    repost_record: AsyncScript
    unrepost: AsyncScript
    delete_post: AsyncScript
    follow: AsyncScript
    purge: AsyncScript
    backfill: AsyncScript
    hide: AsyncScript
    decide: AsyncScript
    page: AsyncScript
    account: AsyncScript
    gift: AsyncScript
    seed_codes: AsyncScript
    purchase: AsyncScript
    order_status: AsyncScript
    release: AsyncScript
    progress: AsyncScript
    tag: AsyncScript
    view: AsyncScript
    deliver: AsyncScript

    def __init__(self, redis: AnyRedis) -> None:
        """Register every script on ``redis``; on a cluster each is a
        :class:`~feedamp.feeds.cluster.ClusterScript` (routed by a declared key)."""
        from .cluster import ClusterScript

        cluster = is_cluster(redis)
        for name in SCRIPT_NAMES:
            script = redis.register_script(source(name))
            setattr(self, name, ClusterScript(name, script) if cluster else script)
