"""Rows of a feed as ``page.lua`` returns them, for the readers that merge feed buckets.

An attribution value lists reposters, most recent first, comma-separated; a reposter
prefixed with :data:`LABEL_MARK` reposted with the forwarded_many_times label, and an entry
shows its latest reposter's label. Entries order by score, then post id, descending; the
cursor after an entry is ``<score>:<post_id>`` (:mod:`feedamp.feeds.pages`).
"""

from __future__ import annotations

from .pages import encode_cursor

__all__ = ["LABEL_MARK", "Entry"]

#: A reposter in an attribution value prefixed with this mark reposted with the
#: forwarded_many_times label; an entry shows its latest reposter's label.
LABEL_MARK = "^"


class Entry:
    """One raw row of page.lua (a feed page, or a feed read for recommendations): post
    id, score as Redis wrote it, attribution value."""

    __slots__ = ("labelled", "post_id", "reposters", "score", "text")

    def __init__(self, post_id: bytes, score: bytes | str, via: bytes | None) -> None:
        self.post_id = post_id
        self.text = score.decode() if isinstance(score, bytes) else score
        self.score = float(self.text)
        value = via.decode() if via else ""
        self.labelled = value.startswith(LABEL_MARK)
        self.reposters: tuple[str, ...] = (
            # items "[^]id@time", latest first (README, key schema)
            tuple(r.removeprefix(LABEL_MARK).rpartition("@")[0] for r in value.split(","))
            if value
            else ()
        )

    def after(self, cursor: Entry) -> bool:
        """True if this entry comes after ``cursor`` in feed order."""
        return self.score < cursor.score or (
            self.score == cursor.score and self.post_id < cursor.post_id
        )

    def cursor(self) -> str:
        return encode_cursor(self.text, self.post_id.decode())
