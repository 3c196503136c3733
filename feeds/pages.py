"""Pages of the reads: items newest first, and the cursor of the next page.

Every paged read (Following, For You, the gift inbox, the order center) pages a sorted set
by score, highest first, and hands out the same cursor: ``<score>:<member>`` of the last
item of the page, the score as Redis wrote it. The next page starts strictly after that
item (lower score, or the same score and a lower member), so pages stay consistent while
new items arrive at the top. ``limit`` is 1 to :data:`MAX_LIMIT` everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["MAX_LIMIT", "Page", "check_limit", "decode_cursor", "encode_cursor"]

#: The largest page any read returns.
MAX_LIMIT = 1000

T = TypeVar("T")


# Not slotted: a parametrized call (``Page[FeedItem](...)``) sets ``__orig_class__``.
@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of items and the cursor of the next page (``None`` at the end)."""

    items: list[T] = field(default_factory=list)
    next_cursor: str | None = None


def check_limit(limit: int) -> None:
    """ValueError unless ``limit`` is 1 to :data:`MAX_LIMIT`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")


def encode_cursor(score: str, member: str) -> str:
    """The cursor after the item ``member`` with ``score`` (as Redis wrote it)."""
    return f"{score}:{member}"


def decode_cursor(cursor: str) -> tuple[str, str]:
    """``(score, member)`` of a cursor; ValueError naming it if it is not one."""
    score, sep, member = cursor.partition(":")
    try:
        if not sep or not member:
            raise ValueError
        float(score)
    except ValueError:
        raise ValueError(f"invalid cursor {cursor!r}") from None
    return score, member
