"""The order center and purchase attribution.

``purchase`` creates an order in the buyer's order center and credits the creators it
came through (the author of ``via_post_id``, the reposter of ``via_repost_id``), once per
order and creator, even when the post or repost is handled after the purchase.
``order_status`` events move an order through placed -> paid -> shipped -> delivered, or
to cancelled / refunded. Every status event received is kept, and the status and history
are recomputed from all of them in ``seq`` order (``ts`` order when an event has no seq),
so late, repeated and out-of-order events end in the same state as in-order ones; a move
the state machine does not allow is kept, flagged ``illegal_transition``, not applied.
Cancelling or refunding takes the credit back. All of it runs in ``lua/`` (see
``lib_shop.lua``).
"""

from __future__ import annotations

from collections.abc import Sequence

from feedamp.config import Settings
from feedamp.feeds.batch import context, run_scripts
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.scripts import Scripts, argv
from feedamp.feeds.store import Applied, Failure
from feedamp.models.events import Event, OrderStatus, Purchase
from redis.commands.core import AsyncScript

__all__ = ["OrderStore"]


class OrderStore:
    """Applies ``purchase`` and ``order_status`` events."""

    def __init__(self, redis: AnyRedis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.scripts = Scripts(redis)

    async def apply(self, events: Sequence[Event], *, prefix: str | None = None) -> Applied:
        """Apply the order events of ``events`` in order."""
        ctx = context(self.settings, prefix)
        calls: list[tuple[AsyncScript, list[str | int]]] = []
        indexes: list[int] = []
        for i, ev in enumerate(events):
            if isinstance(ev, Purchase):
                args = argv("purchase", ctx, order_id=ev.order_id, buyer_id=ev.buyer_id,
                            product_id=ev.product_id, seller_id=ev.seller_id,
                            amount_cents=ev.amount_cents, currency=ev.currency,
                            via_post_id=ev.via_post_id or "",
                            via_repost_id=ev.via_repost_id or "", ts=ev.ts)  # fmt: skip
                calls.append((self.scripts.purchase, args))
            elif isinstance(ev, OrderStatus):
                seq = -1 if ev.seq is None else ev.seq
                # Repeats of one status event (same seq) count once, whatever their ids.
                dedup = ev.event_id if ev.seq is None else f"{ev.status}:{ev.seq}"
                args = argv("order_status", ctx, order_id=ev.order_id, buyer_id=ev.buyer_id,
                            status=ev.status, seq=seq, ts=ev.ts, dedup_id=dedup)  # fmt: skip
                calls.append((self.scripts.order_status, args))
            else:
                continue
            indexes.append(i)
        applied = Applied()
        for i, result in zip(indexes, await run_scripts(self.redis, calls), strict=True):
            if isinstance(result, Exception):
                applied.failures.append(Failure(i, result))
        return applied
