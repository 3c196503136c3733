"""Decisions: the engine's verdicts, published to the ``decisions`` topic as JSON.

Three shapes share the topic; each has ``event_id``, ``decision``, ``reasons`` and ``ts``:

- :class:`Decision`: one per repost (``delivered`` ... ``refused``), keyed by post id;
- :class:`GiftDecision`: one per gift (``accepted`` or ``refused``), keyed by gift id;
- :class:`Refusal`: a post stopped at the door (its author is suspended; the door stops no
  other event but reposts, which get a :class:`Decision`), keyed by
  the actor's id.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = [
    "ACCEPTED",
    "DELIVERED",
    "OUTCOMES",
    "RATE_LIMITED",
    "REFUSED",
    "RESTRICTED",
    "AnyDecision",
    "Decision",
    "GiftDecision",
    "Refusal",
]

DELIVERED = "delivered"  # Following and For You feeds
RESTRICTED = "restricted"  # Following feeds only
RATE_LIMITED = "rate_limited"  # not delivered: a rate cap was reached
REFUSED = "refused"  # not delivered: the repost is not allowed at all
OUTCOMES = (DELIVERED, RESTRICTED, RATE_LIMITED, REFUSED)
ACCEPTED = "accepted"  # a gift was handed over

# Reason codes.
FOLLOWERS_ONLY = "followers_only"
USER_RATE = "user_rate"
FORWARDED_MANY_TIMES = "forwarded_many_times"
FORWARDED_HOURLY = "forwarded_hourly"
VIRALITY_BRAKE = "virality_brake"
NO_COMMENT = "no_comment"
SUSPENDED = "suspended"  # the actor (reposter, sender, author...) is suspended
AUTHOR_SUSPENDED = "author_suspended"  # a repost of a suspended account's post
# Gift refusals.
UNKNOWN_OFFER = "unknown_offer"
OUTSIDE_WINDOW = "outside_window"
SELF_GIFT = "self_gift"
RECIPIENT_SUSPENDED = "recipient_suspended"
SEND_LIMIT = "send_limit"
CODES_EXHAUSTED = "codes_exhausted"


class _Published:
    """What every decision shape shares: its JSON form on ``decisions``."""

    __slots__ = ()

    def to_json(self) -> bytes:
        """The message value published to ``decisions``."""
        return orjson.dumps(self)  # a dataclass of strings, ints and a tuple of strings


@dataclass(frozen=True, slots=True)
class Decision(_Published):
    """One repost's decision. ``reasons`` are short codes; empty when simply delivered."""

    event_id: str
    repost_id: str
    reposter_id: str
    post_id: str
    depth: int
    decision: str
    reasons: tuple[str, ...]
    ts: int

    @property
    def reaches_feeds(self) -> bool:
        return self.decision in (DELIVERED, RESTRICTED)

    @property
    def key(self) -> bytes:
        """The message key on ``decisions``: the post id (one partition per post)."""
        return self.post_id.encode()


@dataclass(frozen=True, slots=True)
class GiftDecision(_Published):
    """One gift's outcome: ``accepted`` or ``refused`` with its reasons."""

    event_id: str
    gift_id: str
    sender_id: str
    decision: str
    reasons: tuple[str, ...]
    ts: int

    @property
    def key(self) -> bytes:
        """The message key on ``decisions``: the gift id."""
        return self.gift_id.encode()


@dataclass(frozen=True, slots=True)
class Refusal(_Published):
    """An event refused at the door because its actor ``user_id`` is suspended."""

    event_id: str
    type: str
    user_id: str
    reasons: tuple[str, ...]
    ts: int
    decision: str = REFUSED

    @property
    def key(self) -> bytes:
        """The message key on ``decisions``: the actor's id."""
        return self.user_id.encode()


AnyDecision = Decision | GiftDecision | Refusal
