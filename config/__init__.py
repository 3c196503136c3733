"""Settings from the environment.

Two settings are the contract with the deployment: ``KAFKA_BOOTSTRAP_SERVERS`` and
``REDIS_URL``. Everything else has a default here and a ``FEEDAMP_*`` override, so a
deployment changes behaviour without code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["Settings", "Topics"]


@dataclass(frozen=True, slots=True)
class Topics:
    """Kafka topic names. Inputs first, then the two outputs."""

    posts: str = "posts"
    reposts: str = "reposts"
    graph: str = "graph"
    gifts: str = "gifts"
    purchases: str = "purchases"
    accounts: str = "accounts"
    decisions: str = "decisions"
    dead_letter: str = "dead-letter"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The topics the worker consumes."""
        return (self.posts, self.reposts, self.graph, self.gifts, self.purchases, self.accounts)

    def prefixed(self, prefix: str) -> Topics:
        """The same topics with ``prefix`` put in front of every name (test isolation)."""
        return Topics(**{f.name: prefix + getattr(self, f.name) for f in fields(self)})


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the engine. Build with :meth:`from_env`; tests use :func:`replace`."""

    kafka_bootstrap_servers: str = "localhost:9092"
    redis_url: str = "redis://localhost:6379/0"
    #: Faust application id; also the Kafka consumer group.
    app_id: str = "feedamp"
    topics: Topics = field(default_factory=Topics)
    #: Partitions for topics the worker creates (Kafka clusters usually pre-create them).
    partitions: int = 8
    #: Prefix of every Redis key (``fa:feed:{42}``); one namespace per prefix.
    key_prefix: str = "fa:"
    #: Following feed cap: at most this many entries, the newest, are kept.
    feed_cap: int = 800
    #: Sorted sets one feed is split into (by a hash of the post id). Each bucket keeps
    #: its newest ``ceil(feed_cap / feed_buckets)`` entries; at the default 100 a bucket
    #: stays in Redis' compact listpack encoding. Fixed for the life of a key namespace.
    feed_buckets: int = 8
    #: Posts and reposts remembered per author, used to backfill a new follower.
    recent_per_author: int = 100
    #: Followers visited by one Lua call; bounds how long one call holds Redis.
    fanout_chunk: int = 2000
    #: Events handled per batch, and how long to wait to fill one (seconds).
    batch_size: int = 500
    batch_within: float = 0.02
    #: Largest accepted event value, in bytes, and largest text field, in characters.
    max_event_bytes: int = 64 * 1024
    max_text_chars: int = 4000
    #: Kafka consumer session and rebalance timeouts (seconds); short in dev and tests.
    session_timeout: float = 30.0
    rebalance_timeout: float = 30.0
    #: Longest a consumer fetch waits for data (ms): bounds latency on brokers that hold
    #: fetches for the whole wait.
    fetch_max_wait_ms: int = 100
    #: Faust's local data directory (no tables are kept; default: a temp directory).
    data_dir: str = ""
    #: Web port of the worker (0 disables Faust's web server).
    web_port: int = 6066
    redis_max_connections: int = 32

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        d = cls()
        topics = Topics(
            **{
                f.name: env.get(f"FEEDAMP_TOPIC_{f.name.upper()}", getattr(d.topics, f.name))
                for f in fields(Topics)
            }
        )
        topic_prefix = env.get("FEEDAMP_TOPIC_PREFIX", "")
        if topic_prefix:
            topics = topics.prefixed(topic_prefix)
        return cls(
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", d.kafka_bootstrap_servers),
            redis_url=env.get("REDIS_URL", d.redis_url),
            app_id=env.get("FEEDAMP_APP_ID", d.app_id),
            topics=topics,
            partitions=_int(env, "FEEDAMP_PARTITIONS", d.partitions),
            key_prefix=env.get("FEEDAMP_KEY_PREFIX", d.key_prefix),
            feed_cap=_int(env, "FEEDAMP_FEED_CAP", d.feed_cap),
            feed_buckets=_int(env, "FEEDAMP_FEED_BUCKETS", d.feed_buckets),
            recent_per_author=_int(env, "FEEDAMP_RECENT_PER_AUTHOR", d.recent_per_author),
            fanout_chunk=_int(env, "FEEDAMP_FANOUT_CHUNK", d.fanout_chunk),
            batch_size=_int(env, "FEEDAMP_BATCH_SIZE", d.batch_size),
            batch_within=_float(env, "FEEDAMP_BATCH_WITHIN", d.batch_within),
            max_event_bytes=_int(env, "FEEDAMP_MAX_EVENT_BYTES", d.max_event_bytes),
            max_text_chars=_int(env, "FEEDAMP_MAX_TEXT_CHARS", d.max_text_chars),
            session_timeout=_float(env, "FEEDAMP_SESSION_TIMEOUT", d.session_timeout),
            rebalance_timeout=_float(env, "FEEDAMP_REBALANCE_TIMEOUT", d.rebalance_timeout),
            fetch_max_wait_ms=_int(env, "FEEDAMP_FETCH_MAX_WAIT_MS", d.fetch_max_wait_ms),
            data_dir=env.get("FEEDAMP_DATA_DIR", d.data_dir),
            web_port=_int(env, "FEEDAMP_WEB_PORT", d.web_port),
            redis_max_connections=_int(
                env, "FEEDAMP_REDIS_MAX_CONNECTIONS", d.redis_max_connections
            ),
        ).validated()

    def validated(self) -> Settings:
        """Return self, or raise ValueError naming the first setting out of range."""
        for name in ("partitions", "feed_cap", "feed_buckets", "recent_per_author", "fanout_chunk",
                     "batch_size"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_within <= 0:
            raise ValueError("batch_within must be > 0 (stream.take needs a timeout)")
        if not self.key_prefix or any(c in self.key_prefix for c in "{} \t\r\n"):
            raise ValueError(
                f"key_prefix must be non-empty without braces or spaces: {self.key_prefix!r}"
            )
        return self

    @property
    def bucket_cap(self) -> int:
        """Entries kept per feed bucket."""
        return -(-self.feed_cap // self.feed_buckets)

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated."""
        return replace(self, **changes).validated()
