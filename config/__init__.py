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

__all__ = [
    "Caps",
    "OperatorError",
    "Settings",
    "Topics",
    "known_variables",
    "unknown_variables",
]


class OperatorError(ValueError):
    """A problem the operator fixes (a setting, an address, a missing topic): its message
    is one line."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Kafka topic names. Inputs first, then the two outputs."""

    posts: str = "posts"
    reposts: str = "reposts"
    graph: str = "graph"
    gifts: str = "gifts"
    purchases: str = "purchases"
    accounts: str = "accounts"
    product_views: str = "product-views"
    decisions: str = "decisions"
    dead_letter: str = "dead-letter"

    @property
    def inputs(self) -> tuple[str, ...]:
        """The topics the worker consumes."""
        return (self.posts, self.reposts, self.graph, self.gifts, self.purchases, self.accounts,
                self.product_views)  # fmt: skip

    @property
    def parked(self) -> tuple[str, ...]:
        """The input topics whose events wait for the watermark and are decided in
        event-time order (reposts: the caps' windows; gifts: send limits and code pools
        shared across senders)."""
        return (self.reposts, self.gifts)

    @property
    def watched(self) -> tuple[str, ...]:
        """The input topics whose partitions' progress makes the watermark: the parked
        ones, posts (a repost is decided once its post is written) and accounts (a
        suspension is on record before what it stops is decided)."""
        return (self.posts, self.reposts, self.gifts, self.accounts)

    def prefixed(self, prefix: str) -> Topics:
        """The same topics with ``prefix`` put in front of every name (test isolation)."""
        return Topics(**{f.name: prefix + getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True, slots=True)
class Caps:
    """Brakes on amplification (env ``FEEDAMP_CAP_<NAME>``, e.g. ``FEEDAMP_CAP_RATE_MAX``).

    Windows are rolling windows of event time, in ms.
    """

    #: False turns every cap off (each repost is delivered); for comparisons only.
    enabled: bool = True
    #: Reposts per user per window; more are rate-limited.
    rate_max: int = 5
    rate_window_ms: int = 60_000
    #: From this forwarding depth an entry is labelled ``forwarded_many_times`` and goes
    #: to Following feeds only.
    frequently_forwarded_depth: int = 5
    #: Frequently-forwarded reposts per user per window; more are rate-limited.
    forwarded_max: int = 1
    forwarded_window_ms: int = 3_600_000
    #: Once a post gathered more than this many reposts in the window, further reposts
    #: go to Following feeds only.
    brake_reposts: int = 1000
    brake_window_ms: int = 600_000
    #: Reposts without a comment go to Following feeds only.
    friction: bool = False
    #: Event-time order: reposts and unreposts wait until every partition of the posts
    #: and reposts topics has been read up to their event time, less this allowed
    #: lateness (ms), and are then decided in event-time order, so that arrival order
    #: across partitions cannot change a decision. 0 decides on arrival.
    lateness_ms: int = 200


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


_DEPLOYMENT_VARS = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "redis_url": "REDIS_URL",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_cafile": "KAFKA_SSL_CAFILE",
    "kafka_ssl_certfile": "KAFKA_SSL_CERTFILE",
    "kafka_ssl_keyfile": "KAFKA_SSL_KEYFILE",
}


def _env_name(field_name: str) -> str:
    return _DEPLOYMENT_VARS.get(field_name) or f"FEEDAMP_{field_name.upper()}"


def _env_value(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _caps_from_env(env: Mapping[str, str]) -> Caps:
    values: dict[str, Any] = {}
    for f in fields(Caps):
        name = f"FEEDAMP_CAP_{f.name.upper()}"
        read = _bool if isinstance(f.default, bool) else _int
        default: Any = f.default
        values[f.name] = read(env, name, default)
    return Caps(**values)


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
    #: For You feed cap, and the half-life of a repost's weight in its ranking (ms).
    for_you_cap: int = 500
    for_you_half_life_ms: int = 6 * 3_600_000
    caps: Caps = field(default_factory=Caps)
    #: Path of the gift campaigns JSON file (see :mod:`feedamp.feeds.shop.campaigns`); empty:
    #: no campaigns, every gift is refused as ``unknown_offer``.
    campaigns: str = ""
    #: Gifts kept per user in the gift inbox and in the sent list (the newest).
    gift_inbox_cap: int = 1000
    #: Products a post may tag (``product_ids``), and products kept in a user's "Looked
    #: at" list (the most recently viewed).
    max_tagged_products: int = 10
    viewed_cap: int = 100
    #: Posts and reposts remembered per author, used to backfill a new follower.
    recent_per_author: int = 100
    #: Deliveries (a follower times an event) per fan-out Lua call, which bounds how long
    #: one call holds Redis; also the followers read per ``SSCAN`` page.
    fanout_chunk: int = 2000
    #: Authors with more followers than this are **pulled**: their posts and reposts are
    #: not fanned out on write; readers merge them into pages (see
    #: :mod:`feedamp.feeds.pull`). 0 turns pulling off (every author is pushed).
    fanout_pull_above: int = 0
    #: Seconds without a read after which fan-out skips a follower, whose feeds are then
    #: rebuilt on their next read (:mod:`feedamp.feeds.dormancy`); 0: every follower is
    #: delivered to.
    inactive_after: int = 0
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
    #: Web port of the worker (0 disables Faust's web server), and the address it binds
    #: (``0.0.0.0`` to let Prometheus or probes in other containers reach it).
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    redis_max_connections: int = 32
    #: Kafka connection security (env ``KAFKA_SECURITY_PROTOCOL`` and so on): protocol
    #: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``; SASL mechanism ``PLAIN``,
    #: ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` with its user and password; TLS files (PEM).
    #: Mapped to client options by :mod:`feedamp.kafka.config`.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``).

        Each field ``name`` comes from ``FEEDAMP_<NAME>`` except the two deployment
        settings ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``; topics from
        ``FEEDAMP_TOPIC_<NAME>`` (and ``FEEDAMP_TOPIC_PREFIX``), caps from
        ``FEEDAMP_CAP_<NAME>``.
        """
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
        values: dict[str, Any] = {"topics": topics, "caps": _caps_from_env(env)}
        for f in fields(cls):
            if f.name in values:
                continue
            name, default = _env_name(f.name), getattr(d, f.name)
            if isinstance(default, bool):
                values[f.name] = _bool(env, name, default)
            elif isinstance(default, int):
                values[f.name] = _int(env, name, default)
            elif isinstance(default, float):
                values[f.name] = _float(env, name, default)
            else:
                values[f.name] = env.get(name, default)
        return cls(**values).validated()

    def to_env(self) -> dict[str, str]:
        """The environment that :meth:`from_env` reads back as these settings."""
        env = {
            f"FEEDAMP_TOPIC_{f.name.upper()}": getattr(self.topics, f.name) for f in fields(Topics)
        }
        for f in fields(Caps):
            env[f"FEEDAMP_CAP_{f.name.upper()}"] = _env_value(getattr(self.caps, f.name))
        for f in fields(self):
            if f.name not in ("topics", "caps"):
                env[_env_name(f.name)] = _env_value(getattr(self, f.name))
        return env

    def validated(self) -> Settings:
        """Return self, or raise ValueError naming the first variable out of range."""
        for name in ("partitions", "feed_cap", "feed_buckets", "for_you_cap",
                     "for_you_half_life_ms", "recent_per_author", "fanout_chunk",
                     "batch_size", "gift_inbox_cap", "max_tagged_products",
                     "viewed_cap", "max_event_bytes", "max_text_chars",
                     "redis_max_connections"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{_env_name(name)} must be >= 1, got {getattr(self, name)}")
        if self.fanout_pull_above < 0:
            raise ValueError(
                f"FEEDAMP_FANOUT_PULL_ABOVE must be >= 0 (0: off), got {self.fanout_pull_above}"
            )
        if self.inactive_after < 0:
            raise ValueError(
                f"FEEDAMP_INACTIVE_AFTER must be >= 0 (0: off), got {self.inactive_after}"
            )
        for name in ("batch_within", "session_timeout", "rebalance_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{_env_name(name)} must be > 0, got {getattr(self, name)}")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                "REDIS_URL must start with redis://, rediss:// or unix:// "
                f"(e.g. redis://localhost:6379/0), got {self.redis_url.rsplit('@', 1)[-1]!r}"
            )
        if not 0 <= self.web_port <= 65535:
            raise ValueError(f"FEEDAMP_WEB_PORT must be 0..65535 (0: off), got {self.web_port}")
        for f in fields(Caps):
            value = getattr(self.caps, f.name)
            if isinstance(value, bool):
                continue
            low = 1 if f.name.endswith("_window_ms") else 0
            if value < low:
                raise ValueError(f"FEEDAMP_CAP_{f.name.upper()} must be >= {low}, got {value}")
        if not self.key_prefix or any(c in self.key_prefix for c in "{} \t\r\n"):
            raise ValueError(
                "FEEDAMP_KEY_PREFIX must be non-empty without braces or spaces: "
                f"{self.key_prefix!r}"
            )
        return self

    @property
    def bucket_cap(self) -> int:
        """Following entries kept per feed bucket."""
        return -(-self.feed_cap // self.feed_buckets)

    @property
    def for_you_bucket_cap(self) -> int:
        """For You entries kept per feed bucket."""
        return -(-self.for_you_cap // self.feed_buckets)

    def with_(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated."""
        return replace(self, **changes).validated()


#: Variables read outside :class:`Settings` (by the logging set-up).
OTHER_VARIABLES = ("FEEDAMP_LOG_FORMAT", "FEEDAMP_TOPIC_PREFIX")


def known_variables() -> set[str]:
    """Every ``FEEDAMP_*`` variable the engine reads."""
    return {n for n in Settings().to_env() if n.startswith("FEEDAMP_")} | set(OTHER_VARIABLES)


def unknown_variables(env: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``FEEDAMP_*`` variables in ``env`` that nothing reads (likely typos), each with
    the closest known name (None when nothing is close)."""
    import difflib

    env = os.environ if env is None else env
    known = sorted(known_variables())
    return [
        (name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None))
        for name in sorted(env)
        if name.startswith("FEEDAMP_") and name not in known
    ]
