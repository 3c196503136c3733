"""What the console shows that the views do not hold: each repost's place in its post's
cascade, recent decisions by kind, and the posts reposted most recently.

Invariants: every write is idempotent and a function of the events alone (never of the
state they met or the order they came in), so a redelivered batch, a replay of the log
or a replay into a fresh namespace leaves these keys as they were. That is why the
feeds a repost reached are not stored: a follow that arrives before or after the repost
changes whether the fan-out or the follow's backfill delivers it; the console counts
them from the views when it reads (``via`` attribution in the followers' feeds).

- ``cascade:{post}`` (hash): repost_id -> ``via|reposter|ts`` (``via`` empty for a
  repost of the post itself), for every repost applied whatever its decision.
- ``decision_log:{<kind>}`` (sorted set): event_id -> event time of each decision of that
  kind (``delivered``, ``restricted``, ``rate_limited``, ``refused``, ``accepted``);
- ``amplified:{posts}`` (sorted set): post_id -> event time of its latest repost.

Both sorted sets keep only :data:`WINDOW_MS` of event time behind their newest member
(``ZADD GT`` then a trim relative to the newest score, in one script): the result is the
members whose time is within the window of the newest, whatever the order they came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from feedamp.models.decisions import AnyDecision
from feedamp.models.events import Repost

from .cluster import ClusterScript
from .connection import AnyRedis, is_cluster
from .namespace import Namespace

__all__ = ["WINDOW_MS", "Activity", "cascade_value", "parse_cascade"]

#: Event time kept in the decision logs and the amplified index (30 minutes).
WINDOW_MS = 30 * 60 * 1000

#: ZADD GT each (score, member), then drop members older than the window before the newest.
_WINDOWED_ADD = """
local key = KEYS[1]
for i = 2, #ARGV, 2 do
  redis.call('ZADD', key, 'GT', ARGV[i], ARGV[i + 1])
end
local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if top[2] then
  local floor = tonumber(top[2]) - tonumber(ARGV[1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', floor))
end
return 0
"""


def cascade_value(repost: Repost) -> str:
    """The ``cascade:{post}`` field value of ``repost``."""
    return f"{repost.via_repost_id or ''}|{repost.reposter_id}|{repost.ts}"


def parse_cascade(value: bytes | str) -> tuple[str | None, str, int]:
    """``(via, reposter, ts)`` from a ``cascade:{post}`` value."""
    raw = value.decode() if isinstance(value, bytes) else value
    via, reposter, ts = raw.split("|")
    return via or None, reposter, int(ts)


class ActivityKeys:
    """Key names of the activity keys in one namespace."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def cascade(self, post_id: str) -> str:
        """Hash: repost_id -> ``via|reposter|ts``."""
        return f"{self.prefix}cascade:{{{post_id}}}"

    def decision_log(self, kind: str) -> str:
        """Sorted set: event_id -> event time of the recent decisions of ``kind``."""
        return f"{self.prefix}decision_log:{{{kind}}}"

    def amplified(self) -> str:
        """Sorted set: post_id -> event time of its latest repost (recent ones)."""
        return f"{self.prefix}amplified:{{posts}}"


class Activity:
    """Writes the activity keys for applied reposts and decisions (one round trip)."""

    def __init__(self, redis: AnyRedis) -> None:
        self.redis = redis
        script = redis.register_script(_WINDOWED_ADD)
        # A cluster pipeline cannot run a registered script: the cluster wrapper loads it
        # on every master and sends the plain EVALSHA, routed by its declared key.
        self._add = ClusterScript("activity", script) if is_cluster(redis) else script

    async def record(
        self,
        namespace: Namespace | str,
        reposts: Iterable[Repost],
        decisions: Sequence[AnyDecision],
    ) -> None:
        """Record ``reposts`` and ``decisions`` in ``namespace`` (or the one of that
        prefix)."""
        keys = ActivityKeys(namespace if isinstance(namespace, str) else namespace.prefix)
        cascades: dict[str, dict[Any, Any]] = {}
        latest: dict[str, int] = {}
        for ev in reposts:
            cascades.setdefault(ev.post_id, {})[ev.repost_id] = cascade_value(ev)
            latest[ev.post_id] = max(latest.get(ev.post_id, 0), ev.ts)
        logs: dict[str, list[str | int]] = {}
        for d in decisions:
            logs.setdefault(d.decision, []).extend((d.ts, d.event_id))
        if not cascades and not logs:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for post_id, fields in cascades.items():
                pipe.hset(keys.cascade(post_id), mapping=fields)
            if latest:
                flat = [v for post, ts in latest.items() for v in (ts, post)]
                await self._add(keys=[keys.amplified()], args=[WINDOW_MS, *flat], client=pipe)  # type: ignore[arg-type]  # redis-py types omit pipelines as script clients
            for kind, flat in logs.items():
                await self._add(keys=[keys.decision_log(kind)], args=[WINDOW_MS, *flat],
                                client=pipe)  # type: ignore[arg-type]  # fmt: skip
            await pipe.execute()

    async def refused(self, prefix: str, entries: Sequence[tuple[str, int, str | None]]) -> None:
        """Log ``entries`` (event id, event time, the kind each was logged under or None)
        as refused in the namespace ``prefix``, out of the log of their former kind: what a
        late suspension takes back (:mod:`feedamp.feeds.takeback`). One round trip."""
        if not entries:
            return
        keys = ActivityKeys(prefix)
        async with self.redis.pipeline(transaction=False) as pipe:
            for event, _, kind in entries:
                if kind is not None and kind != "refused":
                    pipe.zrem(keys.decision_log(kind), event)
            flat = [v for event, ts, _ in entries for v in (ts, event)]
            await self._add(keys=[keys.decision_log("refused")], args=[WINDOW_MS, *flat],
                            client=pipe)  # type: ignore[arg-type]  # fmt: skip
            await pipe.execute()
