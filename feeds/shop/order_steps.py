"""Reconciling an order's credits and conversions, as slot-local idempotent steps (the
same steps on a standalone Redis and on a Redis Cluster).

An order credits the author of its ``via_post`` and the reposter of its ``via_repost``
(once per order and creator while it is active) and counts as a conversion of a post that
tags its product; those creators' keys live on their own slots. After the order's own
step (``order_purchase.lua`` / ``order_event.lua``, order slot) the orders of a batch are
reconciled in steps, each one pipeline for all of them (one round trip per node):

1. order slot (``order_facts.lua``): what the order knows;
2. repost slot (``order_repost.lua``): the reposter and post of ``via_repost``, or the
   order waits in ``awaiting_repost:{repost}``;
3. post slot (``order_post.lua``): the author of ``via_post`` (or the repost's post), or
   the order waits in ``awaiting_post:{post}``; whether the post tags the product, or the
   order waits in ``awaiting_tags:{post}``;
4. order slot (``order_settle.lua``): what was learnt, and what each creator should have;
5. creator slots (``order_credit.lua``): the credit and conversions, made or taken back
   once each by the creator's ``credited`` / ``converted`` sets.

Invariants: a read of a creator and the wait for it are one step on the creator's slot,
so a creator recorded meanwhile finds the order waiting; every step is idempotent and
computes from the order's current state, so reconciling again (a redelivery, a retry, a
later trigger) changes nothing that is right. An order's events are handled by one worker
at a time (the order topics are keyed by order id). A post, repost or tag recorded later
reconciles the orders waiting for it through :meth:`OrderSteps.unwait` (its origin step
returns them: ``post.lua``, ``repost.lua``, ``repost_record.lua``, ``tag.lua``) or
:meth:`OrderSteps.settle_waiting` (reading the waiting sets); an order is taken out of a
waiting set only after it was reconciled, so a crash in between leaves it waiting for the
redelivery, which finds it again.

A late suspension that takes back a post or repost record (:mod:`feedamp.feeds.takeback`)
settles the orders naming it afresh through :meth:`OrderSteps.forget`: they forget the
creators learnt from records (and the post learnt from a repost, marked ``vpl``), their
credits and conversions are taken back, and the same steps reconcile them from the
records as they are now, so they end waiting exactly as if the record had never existed.
The orders naming a post or repost are found in ``orders_via_post`` /
``orders_via_repost``, written with the purchase (a function of the log).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from feedamp.config import Settings
from feedamp.feeds.batch import run_scripts, text
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.keys import Awaiting, Keys
from feedamp.feeds.scripts import argv
from feedamp.feeds.writer import Writer

__all__ = ["OrderSteps", "OrderWriter"]


class OrderSteps:
    """The reconciliation steps on one client's registered scripts."""

    def __init__(self, redis: Any, scripts: Any) -> None:
        self.redis = redis
        self.scripts = scripts

    async def reconcile(
        self,
        ctx: Sequence[str | int],
        orders: Sequence[str],
        seen: dict[str, tuple[str | None, ...]] | None = None,
    ) -> dict[str, Exception]:
        """Reconcile the credits and conversions of ``orders``; return the script errors
        by order (transient errors propagate). ``seen`` receives each order's own state
        (:func:`_own_state`) as step 1 read it."""
        sc, ctx = self.scripts, list(ctx)
        orders = list(dict.fromkeys(orders))
        failed: dict[str, Exception] = {}

        def ok(order: str, result: object) -> bool:
            if isinstance(result, Exception):
                failed.setdefault(order, result)
                return False
            return True

        # 1. Order slot: the facts.
        facts: dict[str, list[str | None]] = {}
        got = await run_scripts(
            self.redis, ((sc.order_facts, argv("order_facts", ctx, order_id=o)) for o in orders)
        )
        for order, result in zip(orders, got, strict=True):
            if ok(order, result):
                facts[order] = [None if v is None else text(v) for v in result]  # type: ignore[attr-defined]
                if seen is not None:
                    seen[order] = _own_state(facts[order])
        # 2. Repost slot: the reposter and the post of via_repost.
        asks = [o for o, f in facts.items() if f[4] and not f[6]]
        reposts: dict[str, tuple[str, str]] = {}
        got = await run_scripts(self.redis, ((sc.order_repost, argv(
            "order_repost", ctx, repost_id=str(facts[o][4]), order_id=o))
            for o in asks))  # fmt: skip
        for order, result in zip(asks, got, strict=True):
            if ok(order, result):
                user, post = (None if v is None else text(v) for v in result)  # type: ignore[attr-defined]
                reposts[order] = (user or "", post or "")
        # 3. Post slot: the author of via_post and whether it tags the product.
        posts: dict[str, str] = {}
        for order, f in facts.items():
            if order not in failed and (post := f[3] or reposts.get(order, ("", ""))[1]):
                posts[order] = post
        found: dict[str, tuple[str, str]] = {}
        got = await run_scripts(self.redis, (
            (sc.order_post, argv("order_post", ctx, post_id=post, order_id=order,
                                 product_id=_product_if_active(facts[order])))
            for order, post in posts.items()
        ))  # fmt: skip
        for order, result in zip(posts, got, strict=True):
            if ok(order, result):
                author, tagged = (text(v) for v in result)  # type: ignore[attr-defined]
                found[order] = (author, tagged)
        # 4. Order slot: settle, and what each creator should have.
        settle = [o for o in facts if o not in failed]
        none = ("", "")
        got = await run_scripts(self.redis, (
            (sc.order_settle, argv("order_settle", ctx, order_id=o,
                                   reposter=reposts.get(o, none)[0],
                                   repost_post=reposts.get(o, none)[1],
                                   via_post_author=found.get(o, none)[0],
                                   tagged=found.get(o, none)[1]))
            for o in settle
        ))  # fmt: skip
        credits: list[tuple[str, list[str | int]]] = []
        for order, result in zip(settle, got, strict=True):
            if not ok(order, result):
                continue
            out = [text(v) for v in result]  # type: ignore[attr-defined]
            by_creator: dict[str, list[str]] = {}
            for i in range(2, len(out), 4):
                kind, creator, field, want = out[i : i + 4]
                by_creator.setdefault(creator, []).extend([kind, field, want])
            for creator, actions in by_creator.items():
                credits.append(
                    (
                        order,
                        argv(
                            "order_credit",
                            ctx,
                            *actions,
                            creator_id=creator,
                            order_id=order,
                            amount=out[0],
                            currency=out[1],
                        ),
                    )
                )
        # 5. Creator slots: credits and conversions, once each.
        got = await run_scripts(self.redis, [(sc.order_credit, args)
                                             for _, args in credits])  # fmt: skip
        for (order, _), result in zip(credits, got, strict=True):
            ok(order, result)
        return failed

    async def _own_states(
        self, ctx: Sequence[str | int], orders: Sequence[str]
    ) -> dict[str, tuple[str | None, ...]]:
        """Each order's own state (:func:`_own_state`) now, one round trip."""
        got = await run_scripts(self.redis, [
            (self.scripts.order_facts, argv("order_facts", list(ctx), order_id=o)) for o in orders
        ])  # fmt: skip
        return {
            o: _own_state([None if v is None else text(v) for v in r])  # type: ignore[attr-defined]
            for o, r in zip(orders, got, strict=True)
            if not isinstance(r, Exception)
        }

    async def settle_waiting(
        self, ctx: Sequence[str | int], kind: Awaiting, ids: Sequence[str]
    ) -> dict[str, Exception]:
        """Reconcile the orders waiting in ``kind`` (``awaiting_post``,
        ``awaiting_repost`` or ``awaiting_tags``) of each of ``ids``, then take them out of
        the waiting sets; return the errors by order."""
        keys = Keys(str(ctx[0]))  # ARGV[1], the namespace's prefix
        async with self.redis.pipeline(transaction=False) as pipe:
            for id_ in ids:
                pipe.smembers(keys.awaiting(kind, id_))
            waiting = [sorted(text(o) for o in members) for members in await pipe.execute()]
        return await self.unwait(ctx, kind, dict(zip(ids, waiting, strict=True)))

    async def unwait(
        self, ctx: Sequence[str | int], kind: str, waiting: dict[str, list[str]]
    ) -> dict[str, Exception]:
        """Reconcile the orders of ``waiting`` (id -> orders waiting in ``kind`` of that
        id), then take the reconciled ones out of the waiting sets."""
        return await self.unwait_kinds(ctx, {kind: waiting})

    async def unwait_kinds(
        self, ctx: Sequence[str | int], waiting: Mapping[str, Mapping[str, Sequence[str]]]
    ) -> dict[str, Exception]:
        """:meth:`unwait` for several kinds at once (kind -> id -> orders): the orders are
        reconciled together, once each, then taken out of every set they were found in.
        Used by the post and repost origin steps (:mod:`feedamp.feeds.store`)."""
        everyone = [o for by_id in waiting.values() for orders in by_id.values() for o in orders]
        if not everyone:
            return {}
        failed = await self._reconcile_held(ctx, everyone)
        calls = [(self.scripts.order_unwait, argv("order_unwait", ctx, *done, kind=kind, id=id_))
                 for kind, by_id in waiting.items() for id_, orders in by_id.items()
                 if (done := [o for o in dict.fromkeys(orders) if o not in failed])]  # fmt: skip
        await run_scripts(self.redis, calls)
        return failed

    async def _reconcile_held(
        self, ctx: Sequence[str | int], orders: Sequence[str]
    ) -> dict[str, Exception]:
        """:meth:`reconcile` ``orders``, then again those whose own state moved meanwhile.

        The order's own worker may have changed it (a status event) while these steps ran:
        its credits were then decided from the state before, and may have been written
        after the order's own reconciliation. Such orders are reconciled again until their
        state held still across the steps (the last credit written is then right)."""
        seen: dict[str, tuple[str | None, ...]] = {}
        failed = await self.reconcile(ctx, orders, seen)
        for _ in range(RECHECKS):
            now = await self._own_states(ctx, list(seen))
            moved = [o for o, state in seen.items() if now.get(o, state) != state]
            if not moved:
                break
            seen = {}
            failed.update(await self.reconcile(ctx, moved, seen))
        return failed

    async def forget(self, ctx: Sequence[str | int], orders: Sequence[str]) -> dict[str, Exception]:
        """Settle ``orders`` afresh after post or repost records they may have learnt from
        were taken back (:mod:`feedamp.feeds.takeback`): each forgets its learnt creators
        (``order_forget.lua``, order slot), the credits and conversions it held are taken
        back on the creators' slots, then it is reconciled from the records as they are
        now (waiting again for what is gone, exactly as if it had never been recorded,
        and crediting again what still holds). Idempotent, and safe to repeat after a
        crash at any point: the credits held stay listed on the order until the final
        reconciliation rewrites them. Returns the script errors by order."""
        sc, ctx = self.scripts, list(ctx)
        orders = list(dict.fromkeys(orders))
        if not orders:
            return {}
        failed: dict[str, Exception] = {}
        got = await run_scripts(
            self.redis, [(sc.order_forget, argv("order_forget", ctx, order_id=o)) for o in orders]
        )
        credits: list[tuple[str, list[str | int]]] = []
        for order, result in zip(orders, got, strict=True):
            if isinstance(result, Exception):
                failed[order] = result
                continue
            out = [text(v) for v in result]  # type: ignore[attr-defined]
            by_creator: dict[str, list[str]] = {}
            for i in range(2, len(out), 3):
                kind, creator, field = out[i : i + 3]
                by_creator.setdefault(creator, []).extend([kind, field, "0"])
            credits += [(order, argv("order_credit", ctx, *actions, creator_id=creator,
                                     order_id=order, amount=out[0], currency=out[1]))
                        for creator, actions in by_creator.items()]  # fmt: skip
        got = await run_scripts(self.redis, [(sc.order_credit, a) for _, a in credits])
        for (order, _), result in zip(credits, got, strict=True):
            if isinstance(result, Exception):
                failed.setdefault(order, result)
        failed.update(await self._reconcile_held(ctx, [o for o in orders if o not in failed]))
        return failed


#: How many times :meth:`OrderSteps.unwait_kinds` reconciles again an order whose own
#: state changed meanwhile.
RECHECKS = 3


def _own_state(facts: Sequence[str | None]) -> tuple[str | None, ...]:
    """What only the order's own events change, of ``order_facts.lua``'s answer: bought,
    status, product, via_repost (not the creators the steps learn)."""
    return facts[0], facts[1], facts[2], facts[4]


class OrderWriter(Writer):
    """A store whose writes reconcile orders: a :class:`~feedamp.feeds.writer.Writer` with
    the :class:`OrderSteps` on its scripts."""

    def __init__(self, redis: AnyRedis, settings: Settings) -> None:
        super().__init__(redis, settings)
        self.steps = OrderSteps(redis, self.scripts)


def _product_if_active(facts: Sequence[str | None]) -> str:
    """The order's product when its conversions are asked (purchased, active), else ''."""
    bought, status, product = facts[0], facts[1], facts[2]
    if bought == "1" and product and status not in ("cancelled", "refunded"):
        return product
    return ""
