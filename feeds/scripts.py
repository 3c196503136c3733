"""Lua scripts, loaded from ``lua/`` next to this file. Each script gets ``lib.lua`` in front
(and ``lib_shop.lua`` too, for the scripts that touch orders or attribution)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from redis.commands.core import AsyncScript

from .connection import AnyRedis, is_cluster

__all__ = ["SCRIPT_NAMES", "Scripts", "source"]

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
#: Scripts that take no shared settings and so run without ``lib.lua``.
STANDALONE = frozenset({"page"})
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
