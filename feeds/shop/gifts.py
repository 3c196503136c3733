"""Gifts: brand-partner offers users send each other, judged against the campaigns file.

Each gift is decided once and its outcome kept under its ``gift_id``. What needs no Redis
(unknown offer, outside the campaign's window, a gift to oneself) is found here first;
the rest runs as these slot-local steps, each gift through them in turn:

1. gift slot (``gift_known.lua``): a gift decided before returns its outcome;
2. the door: sender's and recipient's account states (suspended at the gift's time);
3. sender slot (``gift_claim.lua``): claim a send under the campaign's limit (a field of
   ``gift_claims:{sender}``), or ``send_limit``;
4. offer slot (``gift_code.lua``): the code handed to this gift (recorded in
   ``gift_code_of:{offer}``), or ``codes_exhausted``, which releases the claim
   (``gift_release.lua``): the send no longer counts for the sender's later gifts;
5. gift slot (``gift_commit.lua``): the outcome, written once: the commit point;
6. recipient and sender slots (``gift_list.lua``): inbox and sent list.

On a standalone Redis every key is on one node: a batch's gifts run every step of each in
calls of the gifts script (``gifts.lua``, the same step functions), ``GIFTS_PER_CALL``
gifts a call. On a Redis Cluster each step is one pipeline for the whole batch (one round
trip per node), in rounds (see :meth:`GiftStore._claim`) so that a claim released by an
empty code pool goes to the gift that deciding each gift alone would give it to.

Invariants: every step is idempotent by gift id (a claim, a recorded code, ``ZADD``), so
a redelivery at any step repeats the same answers and spends nothing twice, and the first
outcome committed is the one every copy returns.

Order: a batch's gifts are decided in event-time order (ties by event id), each as if
alone (the outcomes of the batch's gifts one at a time, whatever the batches), and in a
worker gifts wait for the watermark and are released in that order across partitions
(:mod:`feedamp.feeds.watermark`), so the sends under a limit and the codes of a pool
shared by every sender of an offer go by event time, whichever partition or worker read
each gift first; a replay decides them the same. Only a gift later than the allowed
lateness is decided when it arrives (and the door judges suspensions on record then).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from feedamp.config import Settings
from feedamp.feeds.accounts import suspended_at
from feedamp.feeds.batch import read_commands, run_scripts, text
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.keys import Keys
from feedamp.feeds.namespace import Namespace
from feedamp.feeds.scripts import argv
from feedamp.feeds.shop.campaigns import Campaign, Catalog, Offer, load_campaigns
from feedamp.feeds.writer import Applied, Failure, Writer
from feedamp.models.decisions import (
    CODES_EXHAUSTED,
    OUTSIDE_WINDOW,
    RECIPIENT_SUSPENDED,
    SELF_GIFT,
    SEND_LIMIT,
    SUSPENDED,
    UNKNOWN_OFFER,
    GiftDecision,
)
from feedamp.models.events import Event, Gift
from redis.commands.core import AsyncScript

__all__ = ["GIFTS_PER_CALL", "GiftStore"]

#: Gifts decided per call of the gifts script (a standalone Redis): a call holds Redis for
#: 30 to 70 µs a gift (measured here), so 2 to 5 ms.
GIFTS_PER_CALL = 64


class GiftStore(Writer):
    """Decides ``gift`` events and keeps inboxes, sent lists and code pools."""

    def __init__(self, redis: AnyRedis, settings: Settings, catalog: Catalog | None = None) -> None:
        """``catalog`` defaults to the file named by ``settings.campaigns``; a bad file
        raises :class:`~feedamp.feeds.shop.campaigns.CampaignError` here, at start."""
        super().__init__(redis, settings)
        self.catalog = load_campaigns(settings.campaigns) if catalog is None else catalog
        #: Namespaces whose code pools were seeded (once per process).
        self._seeded: set[str] = set()
        #: Each offer id asked for, with its campaign (None: not in the catalog), looked up
        #: once (the catalog does not change while the store lives).
        self._offers: dict[str, tuple[Campaign, Offer] | None] = {}

    async def seed(self, *, namespace: Namespace | None = None) -> None:
        """Put the campaigns' codes in their pools (only codes not put there before)."""
        ns = self.at(namespace)
        ctx = ns.context
        calls = [(self.scripts.seed_codes, argv("seed_codes", ctx, *offer.codes, offer_id=offer.id))
                 for offer in self.catalog.offers.values() if offer.codes]  # fmt: skip
        await run_scripts(self.redis, calls)
        self._seeded.add(ns.prefix)

    async def apply(
        self, events: Sequence[Event], *, namespace: Namespace | None = None
    ) -> Applied:
        """Decide and apply the ``gift`` events of ``events`` in event-time order (ties by
        event id), in slot-local steps (see the module docstring)."""
        ns = self.at(namespace)
        if ns.prefix not in self._seeded:
            await self.seed(namespace=ns)
        gifts = sorted((_Pending(i, ev, *self._terms(ev)) for i, ev in enumerate(events)
                        if isinstance(ev, Gift)), key=_event_time)  # fmt: skip
        if not gifts:
            return Applied()
        if self.scripts.gifts is not None:
            await self._decide_at_once(self.scripts.gifts, gifts, ns.prefix)
        else:
            await self._decide_in_steps(gifts, ns)
        applied = Applied()
        for g in sorted(gifts, key=lambda g: g.index):  # decisions in the order given
            if g.error is not None:
                applied.failures.append(Failure(g.index, g.error))
                continue
            decision, reasons = _outcome(g.kept or "")
            applied.decisions.append(GiftDecision(
                event_id=g.gift.event_id, gift_id=g.gift.gift_id, sender_id=g.gift.sender_id,
                decision=decision, reasons=reasons, ts=g.gift.ts,
            ))  # fmt: skip
        return applied

    async def _decide_at_once(
        self, script: AsyncScript, gifts: Sequence[_Pending], prefix: str
    ) -> None:
        """Every step of each gift in one call of the gifts ``script`` (a standalone
        Redis: every key on one node), ``GIFTS_PER_CALL`` gifts a call, in the order
        given."""
        chunks = [gifts[n : n + GIFTS_PER_CALL] for n in range(0, len(gifts), GIFTS_PER_CALL)]
        calls = []
        for chunk in chunks:
            args: list[str | int] = [prefix, self.settings.gift_inbox_cap]
            for g in chunk:
                gift = g.gift
                args += (gift.gift_id, gift.sender_id, gift.recipient_id, gift.offer_id,
                         g.campaign, gift.message or "", gift.ts, g.limit, int(g.has_codes),
                         ",".join(g.reasons))  # fmt: skip
            calls.append((script, args))
        for chunk, reply in zip(chunks, await run_scripts(self.redis, calls), strict=True):
            answers = [reply] * len(chunk) if isinstance(reply, Exception) else reply
            for g, result in zip(chunk, answers, strict=True):  # type: ignore[call-overload]
                if isinstance(result, Exception):
                    g.error = result
                else:
                    g.kept = text(result)

    async def _decide_in_steps(self, gifts: Sequence[_Pending], ns: Namespace) -> None:
        """Each step of the module's list for the whole batch, one slot at a time (a
        Redis Cluster)."""
        sc, ctx = self.scripts, ns.context
        # Each step's calls are made as they are sent (generators): Redis runs the first
        # while the rest are made.
        # 1. Gift slot: a gift decided before keeps its outcome.
        known = await run_scripts(self.redis, (
            (sc.gift_known, argv("gift_known", ctx, gift_id=g.gift.gift_id)) for g in gifts
        ))  # fmt: skip
        for g, result in zip(gifts, known, strict=True):
            if isinstance(result, Exception):
                g.error = result
            elif text(result):
                g.kept = text(result)
        open_ = [g for g in gifts if g.error is None and g.kept is None]
        # 2. The door: sender and recipient suspended at the gift's time (one pipeline).
        await self._door(ns.keys, open_)
        # 3. and 4. Sender slot: claim a send; offer slot: the gift's code.
        await self._claim([g for g in open_ if not g.reasons], ctx)
        # 5. Gift slot: the commit point.
        commits = [g for g in gifts if g.error is None and g.kept is None]
        kept = await run_scripts(self.redis, (
            (sc.gift_commit, argv("gift_commit", ctx, **g.record())) for g in commits
        ))  # fmt: skip
        for g, result in zip(commits, kept, strict=True):
            if isinstance(result, Exception):
                g.error = result
            else:
                g.kept = text(result)
        # 6. Recipient and sender slots: inbox and sent list (again after a redelivery:
        # idempotent).
        cap = self.settings.gift_inbox_cap
        accepted = [g for g in gifts if g.kept is not None and g.kept.startswith("accepted|")]
        lists = (
            (sc.gift_list, argv("gift_list", ctx, kind=kind, user_id=user, gift_id=g.gift.gift_id,
                                 ts=g.gift.ts, cap=cap))
            for g in accepted
            for kind, user in (("gift_inbox", g.gift.recipient_id),
                               ("gifts_sent", g.gift.sender_id))
        )  # fmt: skip
        for n, result in enumerate(await run_scripts(self.redis, lists)):
            if isinstance(result, Exception):
                accepted[n // 2].error = result

    async def _door(self, keys: Keys, gifts: Sequence[_Pending]) -> None:
        """Add ``suspended`` / ``recipient_suspended`` to the gifts whose sender /
        recipient was suspended at the gift's time (one pipeline of account reads, one per
        account)."""
        if not gifts:
            return
        # One read per account, however many of the batch's gifts it sends or receives.
        users = list(dict.fromkeys(u for g in gifts for u in (g.gift.sender_id,
                                                              g.gift.recipient_id)))  # fmt: skip
        account = keys.account
        found = await read_commands(self.redis, [("HMGET", account(user), "susp", "rein")
                                                 for user in users])  # fmt: skip
        states = dict(zip(users, found, strict=True))
        for g in gifts:
            ts = g.gift.ts
            if suspended_at(states[g.gift.sender_id], ts):
                g.reasons.append(SUSPENDED)
            if suspended_at(states[g.gift.recipient_id], ts):
                g.reasons.append(RECIPIENT_SUSPENDED)

    async def _claim(self, gifts: Sequence[_Pending], ctx: Sequence[str | int]) -> None:
        """Claim a send for each gift (sender slot), then take its code (offer slot), in
        rounds that give what deciding each gift alone in turn gives. A gift whose offer
        ran out of codes releases its claim, which a later gift of the sender in the
        campaign (its lane) refused ``send_limit`` may then take: a round's codes stop
        before the first gift refused in a lane where an earlier gift of the round
        claimed a send that a code may release, and the next round claims again from it
        (a claim held is kept: the step is idempotent). A claim granted in a round is
        granted alone too (a lane's count only falls by a release), so only refusals are
        asked again."""
        sc, todo = self.scripts, [g for g in gifts if not g.reasons]
        while todo:
            claims = await run_scripts(self.redis, (
                (sc.gift_claim, argv("gift_claim", ctx, gift_id=g.gift.gift_id,
                                     sender_id=g.gift.sender_id, campaign_id=g.campaign,
                                     send_limit=g.limit))
                for g in todo
            ))  # fmt: skip
            releasable: set[tuple[str, str]] = set()  # lanes with a claim a code may release
            cut = len(todo)
            for n, (g, result) in enumerate(zip(todo, claims, strict=True)):
                g.reasons.clear()
                lane = (g.gift.sender_id, g.campaign)
                if isinstance(result, Exception):
                    g.error = result
                elif text(result) == "send_limit":
                    g.reasons.append(SEND_LIMIT)
                    if lane in releasable:
                        cut = min(cut, n)
                elif g.has_codes:
                    releasable.add(lane)
            coded = [g for g in todo[:cut] if g.error is None and not g.reasons and g.has_codes]
            codes = await run_scripts(self.redis, ((sc.gift_code, argv(
                "gift_code", ctx, offer_id=g.gift.offer_id, gift_id=g.gift.gift_id))
                for g in coded))  # fmt: skip
            out = []
            for g, result in zip(coded, codes, strict=True):
                if isinstance(result, Exception):
                    g.error = result
                elif text(result) == "-":
                    g.reasons.append(CODES_EXHAUSTED)
                    out.append(g)
                else:
                    g.code = text(result)[1:]
            released = await run_scripts(self.redis, [(sc.gift_release, argv(
                "gift_release", ctx, gift_id=g.gift.gift_id, sender_id=g.gift.sender_id))
                for g in out])  # fmt: skip
            for g, result in zip(out, released, strict=True):
                if isinstance(result, Exception):
                    g.error = result
            todo = [g for g in todo[cut:] if g.error is None]

    def _terms(self, gift: Gift) -> tuple[str, int, bool, list[str]]:
        """The gift's campaign, send limit, whether its offer has codes, and the reasons
        to refuse it that need no Redis."""
        reasons = []
        found = self._offers.get(gift.offer_id)
        if found is None:
            offer = self.catalog.offers.get(gift.offer_id)
            found = self._offers[gift.offer_id] = (
                None if offer is None else (self.catalog.campaign(offer.campaign_id), offer)
            )
        if found is None:
            reasons.append(UNKNOWN_OFFER)
            campaign_id, limit, has_codes = "", 0, False
        else:
            campaign, offer = found
            campaign_id, limit, has_codes = campaign.id, campaign.send_limit, bool(offer.codes)
            if not campaign.is_open(gift.ts):
                reasons.append(OUTSIDE_WINDOW)
        if gift.sender_id == gift.recipient_id:
            reasons.append(SELF_GIFT)
        return campaign_id, limit, has_codes, reasons


@functools.lru_cache(maxsize=256)
def _outcome(kept: str) -> tuple[str, tuple[str, ...]]:
    """The decision and reasons of an outcome as committed (``decision|r1,r2``); the few
    outcomes there are parsed once each."""
    decision, _, reasons = kept.partition("|")
    return decision, tuple(r for r in reasons.split(",") if r)


def _event_time(pending: _Pending) -> tuple[int, str]:
    """The order gifts are decided in: event time, ties by event id."""
    return pending.gift.ts, pending.gift.event_id


@dataclass(slots=True)
class _Pending:
    """One gift of a batch on its way through the steps."""

    index: int
    gift: Gift
    campaign: str
    limit: int
    has_codes: bool
    reasons: list[str]
    code: str = ""
    kept: str | None = None  # 'decision|reasons' as committed
    error: Exception | None = None

    def record(self) -> dict[str, str | int]:
        """gift_commit.lua's arguments, by name: the gift and the outcome found."""
        g = self.gift
        return dict(gift_id=g.gift_id, sender_id=g.sender_id, recipient_id=g.recipient_id,
                    offer_id=g.offer_id, campaign_id=self.campaign, message=g.message or "",
                    code=self.code, ts=g.ts,
                    decision="refused" if self.reasons else "accepted",
                    reasons=",".join(self.reasons))  # fmt: skip
