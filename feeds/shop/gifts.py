"""Gifts: brand-partner offers users send each other, judged against the campaigns file.

Each gift is decided once, inside Redis (``lua/gift.lua``), and its outcome kept under its
``gift_id``: the per-campaign send limit, the offer's code pool and the suspension of
sender or recipient are checked there, so a redelivered or replayed gift spends nothing
twice. What needs no Redis (unknown offer, outside the campaign's window, a gift to
oneself) is found here first. Every gift gets one :class:`GiftDecision`.

Gifts are keyed by sender on their topic, so one sender's gifts are decided in order and
the send limit is exact. A code pool is shared by every sender of the offer: codes go
first come, first served, in the order the workers handle the gifts.
"""

from __future__ import annotations

from collections.abc import Sequence

from feedamp.config import Settings
from feedamp.feeds.batch import context, run_scripts, text
from feedamp.feeds.connection import AnyRedis
from feedamp.feeds.scripts import Scripts, argv
from feedamp.feeds.shop.campaigns import Catalog, load_campaigns
from feedamp.feeds.store import Applied, Failure
from feedamp.models.decisions import (
    OUTSIDE_WINDOW,
    SELF_GIFT,
    UNKNOWN_OFFER,
    GiftDecision,
)
from feedamp.models.events import Event, Gift

__all__ = ["GiftStore"]


class GiftStore:
    """Decides ``gift`` events and keeps inboxes, sent lists and code pools."""

    def __init__(self, redis: AnyRedis, settings: Settings, catalog: Catalog | None = None) -> None:
        """``catalog`` defaults to the file named by ``settings.campaigns``; a bad file
        raises :class:`~feedamp.feeds.shop.campaigns.CampaignError` here, at start."""
        self.redis = redis
        self.settings = settings
        self.catalog = load_campaigns(settings.campaigns) if catalog is None else catalog
        self.scripts = Scripts(redis)
        self._seeded: set[str] = set()

    async def seed(self, *, prefix: str | None = None) -> None:
        """Put the campaigns' codes in their pools (only codes not put there before)."""
        ctx = context(self.settings, prefix)
        calls = [(self.scripts.seed_codes, argv("seed_codes", ctx, *offer.codes, offer_id=offer.id))
                 for offer in self.catalog.offers.values() if offer.codes]  # fmt: skip
        await run_scripts(self.redis, calls)
        self._seeded.add(prefix or self.settings.key_prefix)

    async def apply(self, events: Sequence[Event], *, prefix: str | None = None) -> Applied:
        """Decide and apply the ``gift`` events of ``events`` in order."""
        if (prefix or self.settings.key_prefix) not in self._seeded:
            await self.seed(prefix=prefix)
        ctx = context(self.settings, prefix)
        gifts = [(i, ev) for i, ev in enumerate(events) if isinstance(ev, Gift)]
        calls = [(self.scripts.gift, self._argv(ctx, ev)) for _, ev in gifts]
        applied = Applied()
        for (i, ev), result in zip(gifts, await run_scripts(self.redis, calls), strict=True):
            if isinstance(result, Exception):
                applied.failures.append(Failure(i, result))
                continue
            decision, _, reasons = text(result).partition("|")
            found = tuple(r for r in reasons.split(",") if r)
            applied.decisions.append(GiftDecision(
                event_id=ev.event_id, gift_id=ev.gift_id, sender_id=ev.sender_id,
                decision=decision, reasons=found, ts=ev.ts,
            ))  # fmt: skip
        return applied

    def _argv(self, ctx: list[str | int], gift: Gift) -> list[str | int]:
        """gift.lua's arguments: the gift, its campaign's terms, and the reasons to refuse
        it that need no Redis."""
        reasons = []
        offer = self.catalog.offers.get(gift.offer_id)
        if offer is None:
            reasons.append(UNKNOWN_OFFER)
            campaign_id, limit, has_codes = "", 0, False
        else:
            campaign = self.catalog.campaign(offer.campaign_id)
            campaign_id, limit, has_codes = campaign.id, campaign.send_limit, bool(offer.codes)
            if not campaign.is_open(gift.ts):
                reasons.append(OUTSIDE_WINDOW)
        if gift.sender_id == gift.recipient_id:
            reasons.append(SELF_GIFT)
        return argv("gift", ctx, gift_id=gift.gift_id, sender_id=gift.sender_id,
                    recipient_id=gift.recipient_id, offer_id=gift.offer_id,
                    campaign_id=campaign_id, message=gift.message or "", ts=gift.ts,
                    send_limit=limit, has_codes="1" if has_codes else "0",
                    reasons=",".join(reasons),
                    inbox_cap=self.settings.gift_inbox_cap)  # fmt: skip
