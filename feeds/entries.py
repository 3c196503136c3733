"""Rows of a feed as ``page.lua`` returns them, for the readers that merge feed buckets.

One attribution value (``via:{user}:<b>``) serves both feeds of a bucket: reposters the
reader follows, comma-separated, latest Following reason first (ties by id). An item is
``[^]id@t`` (a Following reason at ``t`` and a For You signal at ``t``), ``[^]id@t:f`` (the
For You signal at ``f``, an earlier repost) or ``[^]id@t:`` (Following only, no For You
signal). A reposter prefixed with :data:`LABEL_MARK` reposted with the forwarded_many_times
label, and a Following entry shows its latest reposter's label. A For You entry lists the
reposters with a signal, latest signal first (ties by id), without labels. Entries order
by score, then post id, descending; the cursor after an entry is ``<score>:<post_id>``
(:mod:`feedamp.feeds.pages`).
"""

from __future__ import annotations

from .pages import encode_cursor

__all__ = ["LABEL_MARK", "Entry", "parse_via"]

#: A reposter in an attribution value prefixed with this mark reposted with the
#: forwarded_many_times label; an entry shows its latest reposter's label.
LABEL_MARK = "^"


def parse_via(value: str) -> list[tuple[str, bool, int, int | None]]:
    """The items of an attribution value, in its order: ``(reposter, labelled, Following
    time, For You time or None)``."""
    items = []
    for raw in value.split(",") if value else ():
        labelled = raw.startswith(LABEL_MARK)
        head, sep, fy = raw.removeprefix(LABEL_MARK).partition(":")
        reposter, _, t = head.rpartition("@")
        f = int(fy) if fy else (None if sep else int(t))
        items.append((reposter, labelled, int(t), f))
    return items


class Entry:
    """One raw row of page.lua (a feed page, or a feed read for recommendations): post
    id, score as Redis wrote it, attribution value."""

    __slots__ = ("labelled", "post_id", "reposters", "score", "text")

    def __init__(
        self, post_id: bytes, score: bytes | str, via: bytes | None, for_you: bool = False
    ) -> None:
        """A row of the Following feed, or of the For You feed when ``for_you``."""
        self.post_id = post_id
        self.text = score.decode() if isinstance(score, bytes) else score
        self.score = float(self.text)
        items = parse_via(via.decode() if via else "")
        if for_you:
            signals = sorted((-f, r) for r, _, _, f in items if f is not None)
            self.labelled = False
            self.reposters: tuple[str, ...] = tuple(r for _, r in signals)
        else:
            self.labelled = bool(items) and items[0][1]
            self.reposters = tuple(r for r, _, _, _ in items)

    def after(self, cursor: Entry) -> bool:
        """True if this entry comes after ``cursor`` in feed order."""
        return self.score < cursor.score or (
            self.score == cursor.score and self.post_id < cursor.post_id
        )

    def cursor(self) -> str:
        return encode_cursor(self.text, self.post_id.decode())
