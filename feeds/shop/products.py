"""Product tags and product views: the writes behind the Order Center's product sections.

``post`` events may tag products (``product_ids``): ``tag.lua`` records them in
``products:{post}`` and marks the post's tags known (post slot), then the orders that named
the post before it arrived are reconciled in their own steps
(:class:`~feedamp.feeds.shop.order_steps.OrderSteps`). ``product_view`` events go to the viewer's
"Looked at" list through ``view.lua``: one entry per product at the time of its latest
view (``ZADD GT``), so arrival order never matters, capped at ``Settings.viewed_cap``.

Invariants: every script is idempotent and commutes with the others (a replay, a
redelivery or any arrival order gives the same keys). Tags are never removed: a deleted
post, a suspended author or a block hides them at read time, as it hides the post
(:mod:`feedamp.feeds.shop.product_reads`). Conversions (see ``lib_shop.lua``) are reconciled
from the order's state whenever it or its post changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from feedamp.feeds.batch import run_scripts, text
from feedamp.feeds.namespace import Namespace
from feedamp.feeds.scripts import argv
from feedamp.feeds.shop.order_steps import OrderWriter
from feedamp.feeds.writer import Applied, Failure
from feedamp.models.events import Event, Post, ProductView
from redis.commands.core import AsyncScript

__all__ = ["ProductStore"]


class ProductStore(OrderWriter):
    """Applies the product side of ``post`` (its tags) and ``product_view`` events."""

    async def apply(
        self, events: Sequence[Event], *, namespace: Namespace | None = None
    ) -> Applied:
        """Record the tags of every post and every product view of ``events``, in order.

        Every post is recorded, tagged or not: that marks its tags known, so an order
        waiting for them is settled either way."""
        ctx = self.at(namespace).context
        calls: list[tuple[AsyncScript, list[str | int]]] = []
        indexes: list[int] = []
        tagged: list[str | None] = []
        for i, ev in enumerate(events):
            if isinstance(ev, Post):
                args = argv("tag", ctx, *(ev.product_ids or ()), post_id=ev.post_id,
                            author_id=ev.author_id)  # fmt: skip
                calls.append((self.scripts.tag, args))
                tagged.append(ev.post_id)
            elif isinstance(ev, ProductView):
                args = argv("view", ctx, user_id=ev.user_id, product_id=ev.product_id, ts=ev.ts,
                            via_post_id=ev.via_post_id or "", via_repost_id=ev.via_repost_id or "",
                            cap=self.settings.viewed_cap)  # fmt: skip
                calls.append((self.scripts.view, args))
                tagged.append(None)
            else:
                continue
            indexes.append(i)
        applied = Applied()
        waiting: dict[str, list[str]] = {}
        results = await run_scripts(self.redis, calls)
        for i, post, result in zip(indexes, tagged, results, strict=True):
            if isinstance(result, Exception):
                applied.failures.append(Failure(i, result))
            elif post is not None and len(result) > 1:  # type: ignore[arg-type]
                waiting[post] = [text(o) for o in result[1:]]  # type: ignore[index]
        # Orders that named a post before its tags were known: their conversions now.
        await self.steps.unwait(ctx, "awaiting_tags", waiting)
        return applied
