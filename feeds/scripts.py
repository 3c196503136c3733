"""Lua scripts, loaded from ``lua/`` next to this file. Each script gets ``lib.lua`` in front
(``lib_key.lua``, key names only, for the slot-local steps), and ``lib_shop.lua`` too for
the scripts that touch orders or attribution."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from redis.commands.core import AsyncScript

from .connection import AnyRedis, is_cluster

__all__ = ["SCRIPT_NAMES", "Scripts", "source"]

SCRIPT_NAMES = (
    "post",
    "repost",
    "unrepost",
    "delete_post",
    "unpush",
    "follow",
    "unfollow",
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
    "release",
    "progress",
    "tag",
    "view",
    "deliver_post",
)
#: Scripts that take no shared settings and so run without ``lib.lua``.
STANDALONE = frozenset({"page"})
#: Scripts that need only key names: ``lib_key.lua`` goes in front instead of ``lib.lua``,
#: and of the seven settings only the prefix is sent (``lib_key.lua`` pads ARGV back, so
#: the script's own arguments keep their places from ARGV[8]): the steps of a batch are
#: many calls, each skips setting up the feed helpers and encoding six settings.
LEAN = frozenset({
    "decide_post", "decide_user", "decide_commit", "gift_known", "gift_claim", "gift_code",
    "gift_release", "gift_commit", "gift_list", "seed_codes", "order_purchase", "order_event",
    "order_buyer", "order_facts", "order_repost", "order_post", "order_settle", "order_credit",
    "order_unwait", "tag", "view", "account",
})  # fmt: skip
#: Scripts that also need the order and attribution helpers.
SHOP = frozenset({"post", "repost", "order_purchase", "order_event", "order_settle",
                  "order_credit"})  # fmt: skip


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


class Scripts:
    """The feed scripts registered on one client; attribute per script (``scripts.post``)."""

    post: AsyncScript
    repost: AsyncScript
    unrepost: AsyncScript
    delete_post: AsyncScript
    unpush: AsyncScript
    follow: AsyncScript
    unfollow: AsyncScript
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
    release: AsyncScript
    progress: AsyncScript
    tag: AsyncScript
    view: AsyncScript
    deliver_post: AsyncScript

    def __init__(self, redis: AnyRedis) -> None:
        """Register every script on ``redis``; on a cluster each is a
        :class:`~feedamp.feeds.cluster.ClusterScript` (routed by a declared key)."""
        from .cluster import ClusterScript

        cluster = is_cluster(redis)
        for name in SCRIPT_NAMES:
            script = redis.register_script(source(name))
            lean = name in LEAN
            if cluster:
                setattr(self, name, ClusterScript(name, script, lean))
            else:
                setattr(self, name, LeanScript(script) if lean else script)


class LeanScript:
    """A :data:`LEAN` script on a standalone Redis: called with the seven settings like
    every script, it sends only the first (the prefix); ``lib_key.lua`` pads ARGV back."""

    def __init__(self, script: AsyncScript) -> None:
        self.script = script

    def __getattr__(self, name: str) -> Any:
        return getattr(self.script, name)

    async def __call__(
        self,
        keys: Sequence[str] | None = None,
        args: Sequence[Any] | None = None,
        client: Any = None,
    ) -> Any:
        argv = list(args or ())
        return await self.script(keys=keys, args=[argv[0], *argv[7:]], client=client)
