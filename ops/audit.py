"""What ``verify`` notices in the log while it replays it, to explain differences.

- **late events**: a reposts-topic or gifts-topic event whose event time (``ts``) is more
  than the allowed lateness (``FEEDAMP_CAP_LATENESS_MS``) before its record's timestamp.
  The worker may have decided it after later ones, and a replay, which merges partitions
  by record time, decides it in another order: caps windows, decisions, sends under a
  limit and codes can differ.
- **reused ids**: one ``event_id`` on events of different types, or one ``repost_id``
  for reposts of different posts. Redis keys by these ids (parked events, decisions,
  repost records), so the later event overwrites the earlier, and which one is later
  can differ between live processing and a replay.

Only records of the reposts, gifts and purchases topics are parsed (where these ids and times
matter); every other record costs nothing. Ids are remembered up to
:data:`MAX_TRACKED` of each kind (bounded memory on a long log); later ids are still
checked against those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from feedamp.config import Settings
from feedamp.streams.records import Record

__all__ = ["LogAudit"]

SAMPLE = 3
#: Event ids and repost ids remembered, at most, each.
MAX_TRACKED = 1_000_000


@dataclass
class LogAudit:
    """Counts late events and reused ids in the records it is shown."""

    settings: Settings
    late: int = 0
    late_sample: list[str] = field(default_factory=list)
    reused: int = 0
    reused_sample: list[str] = field(default_factory=list)
    _types: dict[str, str] = field(default_factory=dict, repr=False)
    _posts: dict[str, str] = field(default_factory=dict, repr=False)

    def __call__(self, records: Sequence[Record]) -> None:
        """Look at a batch of replayed records."""
        topics = self.settings.topics
        lateness = self.settings.caps.lateness_ms
        for r in records:
            if r.topic not in (topics.reposts, topics.gifts, topics.purchases) or not r.value:
                continue
            try:
                event = orjson.loads(r.value)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            type_, event_id = str(event.get("type")), str(event.get("event_id"))
            ts = event.get("ts")
            delay = r.timestamp - ts if isinstance(ts, int) and r.timestamp is not None else None
            late = delay is not None and delay > lateness
            if late and r.topic in (topics.reposts, topics.gifts):
                self.late += 1
                if len(self.late_sample) < SAMPLE:
                    self.late_sample.append(f"{event_id} ({delay:,} ms late)")
            seen = self._types.get(event_id)
            if seen is None and len(self._types) < MAX_TRACKED:
                self._types[event_id] = type_
            elif seen is not None and seen != type_:
                self._reuse(f"event_id {event_id} ({seen}, {type_})")
            if type_ == "repost" and event.get("repost_id") is not None:
                rid, post = str(event["repost_id"]), str(event.get("post_id"))
                first = self._posts.get(rid)
                if first is None and len(self._posts) < MAX_TRACKED:
                    self._posts[rid] = post
                elif first is not None and first != post:
                    self._reuse(f"repost_id {rid} (posts {first}, {post})")

    def _reuse(self, what: str) -> None:
        self.reused += 1
        if len(self.reused_sample) < SAMPLE:
            self.reused_sample.append(what)
