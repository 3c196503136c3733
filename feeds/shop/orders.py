"""The order center and purchase attribution.

``purchase`` creates an order in the buyer's order center and credits the creators it
came through (the author of ``via_post_id``, the reposter of ``via_repost_id``), once per
order and creator, even when the post or repost is handled after the purchase.
``order_status`` events move an order through placed -> paid -> shipped -> delivered, or
to cancelled / refunded. Every status event received is kept, and the status and history
are recomputed from all of them in ``seq`` order (``ts`` order when an event has no seq),
so late, repeated and out-of-order events end in the same state as in-order ones; a move
the state machine does not allow is kept, flagged ``illegal_transition``, not applied.
Cancelling or refunding takes the credit back. Each purchase is also indexed under the
post and repost it names (``orders_via_post`` / ``orders_via_repost``), so that a late
suspension taking their records back can settle the order afresh
(:meth:`~feedamp.feeds.shop.order_steps.OrderSteps.forget`). It runs as slot-local steps
(the order, the buyer, then the creators: :mod:`feedamp.feeds.shop.order_steps`), the
same on a standalone Redis and on a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from feedamp.feeds.batch import run_scripts, send_commands
from feedamp.feeds.keys import Keys
from feedamp.feeds.namespace import Namespace
from feedamp.feeds.scripts import argv
from feedamp.feeds.shop.order_steps import OrderWriter
from feedamp.feeds.writer import Applied, Failure
from feedamp.models.events import Event, OrderStatus, Purchase

__all__ = ["OrderStore"]


class OrderStore(OrderWriter):
    """Applies ``purchase`` and ``order_status`` events."""

    async def apply(
        self, events: Sequence[Event], *, namespace: Namespace | None = None
    ) -> Applied:
        """Apply the order events of ``events`` in order: each order's own step (order
        slot) and the buyer's order center (buyer slot), then the credits of every order
        of the batch (:class:`~feedamp.feeds.shop.order_steps.OrderSteps`)."""
        ctx = self.at(namespace).context
        sc = self.scripts
        picked = [(i, ev) for i, ev in enumerate(events) if isinstance(ev, (Purchase, OrderStatus))]
        applied = Applied()
        if not picked:
            return applied
        indexes = [i for i, _ in picked]
        orders = [ev.order_id for _, ev in picked]

        # Each step's calls are made as they are sent (generators): Redis runs the first
        # while the rest are made.
        def own() -> Iterator[tuple[Any, list[str | int]]]:
            for _, ev in picked:
                if isinstance(ev, Purchase):
                    yield sc.order_purchase, argv(
                        "order_purchase", ctx, order_id=ev.order_id, buyer_id=ev.buyer_id,
                        product_id=ev.product_id, seller_id=ev.seller_id,
                        amount_cents=ev.amount_cents, currency=ev.currency,
                        via_post_id=ev.via_post_id or "", via_repost_id=ev.via_repost_id or "",
                        ts=ev.ts)  # fmt: skip
                else:
                    seq = -1 if ev.seq is None else ev.seq
                    # Repeats of one status event (same seq) count once, whatever their ids.
                    dedup = ev.event_id if ev.seq is None else f"{ev.status}:{ev.seq}"
                    yield sc.order_event, argv(
                        "order_event", ctx, order_id=ev.order_id, buyer_id=ev.buyer_id,
                        status=ev.status, seq=seq, ts=ev.ts, dedup_id=dedup)  # fmt: skip

        def buyers() -> Iterator[tuple[Any, list[str | int]]]:
            for _, ev in picked:
                product = ev.product_id if isinstance(ev, Purchase) else None
                yield sc.order_buyer, argv(
                    "order_buyer", ctx, buyer_id=ev.buyer_id, order_id=ev.order_id, ts=ev.ts,
                    purchase="0" if product is None else "1", product_id=product or "")  # fmt: skip

        failed: dict[int, Exception] = {}
        for n, result in enumerate(await run_scripts(self.redis, own())):
            if isinstance(result, Exception):
                failed[indexes[n]] = result
        for n, result in enumerate(await run_scripts(self.redis, buyers())):
            if isinstance(result, Exception):
                failed.setdefault(indexes[n], result)
        # Which orders name each post and repost (for a late suspension's take-back).
        keys = self.at(namespace).keys
        via = [(i, cmd) for i, ev in enumerate(events) if isinstance(ev, Purchase)
               for cmd in _via_index(keys, ev)]  # fmt: skip
        for (i, _), result in zip(via, await send_commands(self.redis, [c for _, c in via]),
                                  strict=True):  # fmt: skip
            if isinstance(result, Exception):
                failed.setdefault(i, result)
        bad = await self.steps.reconcile(ctx, [o for n, o in enumerate(orders)
                                               if indexes[n] not in failed])  # fmt: skip
        for n, order in enumerate(orders):
            if order in bad:
                failed.setdefault(indexes[n], bad[order])
        applied.failures.extend(Failure(i, failed[i]) for i in sorted(failed))
        return applied


def _via_index(keys: Keys, purchase: Purchase) -> list[tuple[str, str, str]]:
    """The ``SADD`` commands that index ``purchase``'s order under the post and repost it
    names (``orders_via_post`` / ``orders_via_repost``)."""
    commands = []
    if purchase.via_post_id:
        commands.append(("SADD", keys.orders_via_post(purchase.via_post_id), purchase.order_id))
    if purchase.via_repost_id:
        commands.append(("SADD", keys.orders_via_repost(purchase.via_repost_id), purchase.order_id))
    return commands
