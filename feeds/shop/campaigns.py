"""Gift campaigns: the operator's JSON file of brand-partner offers users can send.

The file (named by ``FEEDAMP_CAMPAIGNS``; a sample ships as
``config/campaigns.sample.json`` in the package ``feedamp.config``) looks like::

    {"campaigns": [{"id": "spring", "send_limit": 3,
                    "starts_at": 1767225600000, "ends_at": 1775001600000,
                    "offers": [{"id": "editor-90", "partner": "CutPro",
                                "title": "90-day trial of a video editor",
                                "codes": ["CP-1", "CP-2"]}]}]}

``send_limit`` (default 3) is how many gifts one user may send in the campaign;
``starts_at`` / ``ends_at`` (ms since epoch, optional) bound when its offers may be sent
(``starts_at`` inclusive, ``ends_at`` exclusive); an offer without ``codes`` is unlimited,
one with codes hands each out once. Offer ids are unique across the file, because a gift
names only its offer. :func:`load_campaigns` checks all of it and says exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from feedamp.models.events import InvalidEvent, validate_id

__all__ = ["Campaign", "CampaignError", "Catalog", "Offer", "load_campaigns", "parse_campaigns"]

DEFAULT_SEND_LIMIT = 3


class CampaignError(ValueError):
    """The campaigns file is unreadable or invalid; the message names the place."""


@dataclass(frozen=True, slots=True)
class Offer:
    """One thing a gift can carry, e.g. "90-day trial of a video editor"."""

    id: str
    campaign_id: str
    partner: str
    title: str
    #: The code pool, handed out one code per accepted gift; None: unlimited, no codes.
    codes: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign: its offers, the per-user send limit and the validity window (ms)."""

    id: str
    offers: tuple[Offer, ...]
    send_limit: int = DEFAULT_SEND_LIMIT
    starts_at: int | None = None
    ends_at: int | None = None

    def is_open(self, ts: int) -> bool:
        """True if a gift sent at event time ``ts`` is inside the campaign's window."""
        return (self.starts_at is None or ts >= self.starts_at) and (
            self.ends_at is None or ts < self.ends_at
        )


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every campaign, and every offer by id."""

    campaigns: tuple[Campaign, ...] = ()
    offers: Mapping[str, Offer] = field(default_factory=dict)

    def campaign(self, campaign_id: str) -> Campaign:
        return next(c for c in self.campaigns if c.id == campaign_id)


def load_campaigns(path: str | Path | None) -> Catalog:
    """Read and validate the campaigns file at ``path`` (an empty catalog for None or "")."""
    if not path:
        return Catalog()
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CampaignError(f"{path}: cannot read campaigns file: {exc.strerror}") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CampaignError(f"{path}: not valid JSON: {exc}") from None
    return parse_campaigns(doc, source=str(path))


def parse_campaigns(doc: Any, *, source: str = "campaigns") -> Catalog:
    """Validate a decoded campaigns document; raise :class:`CampaignError` naming the
    first problem (``<source>: campaigns[1].offers[0]: missing "title"``)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("campaigns"), list):
        raise CampaignError(f'{source}: expected an object with a "campaigns" list')
    campaigns: list[Campaign] = []
    offers: dict[str, Offer] = {}
    for n, item in enumerate(doc["campaigns"]):
        where = f"{source}: campaigns[{n}]"
        obj = _object(item, where)
        campaign_id = _id(obj, "id", where)
        if any(c.id == campaign_id for c in campaigns):
            raise CampaignError(f"{where}: duplicate campaign id {campaign_id!r}")
        send_limit = _int(obj, "send_limit", where, None) or DEFAULT_SEND_LIMIT
        starts_at = _int(obj, "starts_at", where, None)
        ends_at = _int(obj, "ends_at", where, None)
        if starts_at is not None and ends_at is not None and ends_at <= starts_at:
            raise CampaignError(f'{where}: "ends_at" must be after "starts_at"')
        if not isinstance(obj.get("offers"), list) or not obj["offers"]:
            raise CampaignError(f'{where}: "offers" must be a non-empty list')
        campaign_offers = []
        for m, raw_offer in enumerate(obj["offers"]):
            offer = _offer(raw_offer, campaign_id, f"{where}.offers[{m}]")
            if offer.id in offers:
                raise CampaignError(
                    f"{where}.offers[{m}]: offer id {offer.id!r} is already used "
                    f"(offer ids are unique across campaigns)"
                )
            offers[offer.id] = offer
            campaign_offers.append(offer)
        campaigns.append(
            Campaign(campaign_id, tuple(campaign_offers), send_limit, starts_at, ends_at)
        )
    return Catalog(tuple(campaigns), offers)


def _offer(item: Any, campaign_id: str, where: str) -> Offer:
    obj = _object(item, where)
    offer_id = _id(obj, "id", where)
    partner, title = _text(obj, "partner", where), _text(obj, "title", where)
    codes = obj.get("codes")
    if codes is not None:
        if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
            raise CampaignError(f'{where}: "codes" must be a list of non-empty strings')
        if len(set(codes)) != len(codes):
            raise CampaignError(f'{where}: "codes" has duplicates')
        codes = tuple(codes)
    return Offer(offer_id, campaign_id, partner, title, codes)


def _object(item: Any, where: str) -> dict:
    if not isinstance(item, dict):
        raise CampaignError(f"{where}: expected an object, got {type(item).__name__}")
    return item


def _id(obj: dict, name: str, where: str) -> str:
    if obj.get(name) is None:
        raise CampaignError(f'{where}: missing "{name}"')
    try:
        return validate_id(obj[name], name)
    except InvalidEvent as exc:
        raise CampaignError(f"{where}: {exc.reason}") from None


def _text(obj: dict, name: str, where: str) -> str:
    value = obj.get(name)
    if value is None:
        raise CampaignError(f'{where}: missing "{name}"')
    if not isinstance(value, str) or not value.strip():
        raise CampaignError(f'{where}: "{name}" must be a non-empty string')
    return value


def _int(obj: dict, name: str, where: str, default: int | None) -> int | None:
    value = obj.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CampaignError(f'{where}: "{name}" must be a non-negative integer')
    if name == "send_limit" and value < 1:
        raise CampaignError(f'{where}: "send_limit" must be at least 1')
    return value
