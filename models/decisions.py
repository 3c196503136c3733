"""Decisions: the engine's verdict on each repost, published to the ``decisions`` topic."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson

__all__ = ["DELIVERED", "OUTCOMES", "RATE_LIMITED", "REFUSED", "RESTRICTED", "Decision"]

DELIVERED = "delivered"  # Following and For You feeds
RESTRICTED = "restricted"  # Following feeds only
RATE_LIMITED = "rate_limited"  # not delivered: a rate cap was reached
REFUSED = "refused"  # not delivered: the repost is not allowed at all
OUTCOMES = (DELIVERED, RESTRICTED, RATE_LIMITED, REFUSED)

# Reason codes.
FOLLOWERS_ONLY = "followers_only"
USER_RATE = "user_rate"
FORWARDED_MANY_TIMES = "forwarded_many_times"
FORWARDED_HOURLY = "forwarded_hourly"
VIRALITY_BRAKE = "virality_brake"
NO_COMMENT = "no_comment"
SUSPENDED = "suspended"


@dataclass(frozen=True, slots=True)
class Decision:
    """One repost's decision. ``reasons`` are short codes; empty when simply delivered."""

    event_id: str
    repost_id: str
    reposter_id: str
    post_id: str
    depth: int
    decision: str
    reasons: tuple[str, ...]
    ts: int

    def to_json(self) -> bytes:
        """The message value published to ``decisions``."""
        return orjson.dumps({**asdict(self), "reasons": list(self.reasons)})

    @property
    def reaches_feeds(self) -> bool:
        return self.decision in (DELIVERED, RESTRICTED)
