"""Worker metrics, kept in memory and rendered in the Prometheus text format (0.0.4).

The agent reports every handled batch to :meth:`Metrics.observe`: the records, the
:class:`Outcome` the batch handler returned and how long handling took. Labels only take
bounded values (known event types, decision kinds, topic names), never ids or reasons.

Exposed series:

- ``feedamp_events_total{type, outcome}``: records handled; ``outcome`` is ``applied``
  (validated and written, or a type the worker validates but does not use yet) or
  ``dead_letter``; ``type`` is the event type, or ``invalid`` when the record is not an
  event of a known type;
- ``feedamp_dead_letters_total{topic}``: dead letters, by the topic the record came from;
- ``feedamp_decisions_total{decision}``: decisions (reposts, gifts, refusals), by kind;
- ``feedamp_fanout_deliveries_total``: feed entries pushed by fan-out, one per follower a
  post or repost reached (counted inside the Lua scripts, which return ``cursor|n``);
  a batch applied again after an outage or a redelivery counts again;
- ``feedamp_batch_seconds``: histogram of the time to handle one batch (Redis writes,
  dead letters and decisions published, outage retries included);
- ``feedamp_batch_events``: histogram of records per batch;
- gauges supplied at scrape time by the web module (consumer lag, assigned partitions).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from feedamp.models import EVENT_TYPES

from .records import Outcome, Record

__all__ = ["Gauge", "Histogram", "Metrics", "event_type", "render_gauge"]

#: Upper bounds of the batch latency histogram, in seconds.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
#: Upper bounds of the batch size histogram, in records.
SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000)

log = logging.getLogger("feedamp.metrics")

INVALID = "invalid"
APPLIED = "applied"
DEAD_LETTER = "dead_letter"


def event_type(record: Record) -> str:
    """The record's event type if it is a known one, else ``invalid`` (bounded label);
    for the records the pipeline could not parse (the others come typed in the outcome)."""
    try:
        obj = orjson.loads(record.value) if record.value else None
    except orjson.JSONDecodeError:
        return INVALID
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) and kind in EVENT_TYPES else INVALID


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str | int]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class Histogram:
    """A cumulative histogram with fixed upper bounds."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break

    def render(self, name: str, help_: str) -> list[str]:
        """The ``_bucket``, ``_sum`` and ``_count`` lines."""
        lines = [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {_number(self.total)}")
        lines.append(f"{name}_count {self.count}")
        return lines


@dataclass(frozen=True)
class Gauge:
    """A gauge read at scrape time: name, help and one value per label set."""

    name: str
    help: str
    samples: Sequence[tuple[Mapping[str, str | int], float]]


def render_gauge(gauge: Gauge) -> list[str]:
    """The lines of one gauge."""
    lines = [f"# HELP {gauge.name} {gauge.help}", f"# TYPE {gauge.name} gauge"]
    lines += [f"{gauge.name}{_labels(lbl)} {_number(v)}" for lbl, v in gauge.samples]
    return lines


def _counter(name: str, help_: str, label: str, values: Mapping) -> list[str]:
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
    for key in sorted(values):
        pairs = dict(zip(label.split(","), key, strict=True)) if label else {}
        lines.append(f"{name}{_labels(pairs)} {values[key]}")
    return lines


class Metrics:
    """Counters and histograms of one worker process."""

    def __init__(self) -> None:
        self.started = time.time()
        self.events: Counter[tuple[str, str]] = Counter()
        self.dead_letters: Counter[tuple[str]] = Counter()
        self.decisions: Counter[tuple[str]] = Counter()
        self.deliveries = 0
        #: The event-time watermark of the latest release (ms), when reposts are ordered.
        self.watermark: float | None = None
        self.batch_seconds = Histogram(LATENCY_BUCKETS)
        self.batch_events = Histogram(SIZE_BUCKETS)

    def observe(self, records: Sequence[Record], outcome: Outcome, seconds: float) -> None:
        """Count one handled batch; never raises (the agent must not stop over metrics)."""
        try:
            self._observe(records, outcome, seconds)
        except Exception:
            log.exception("metrics: could not count a batch")

    def _observe(self, records: Sequence[Record], outcome: Outcome, seconds: float) -> None:
        dead = {(d.record.topic, d.record.partition, d.record.offset) for d in outcome.dead_letters}
        for record in records:
            where = (record.topic, record.partition, record.offset)
            kind = outcome.types.get(where) or event_type(record)  # parsed once, if at all
            self.events[kind, DEAD_LETTER if where in dead else APPLIED] += 1
        for letter in outcome.dead_letters:
            self.dead_letters[(letter.record.topic,)] += 1
        for decision in outcome.decisions:
            self.decisions[(decision.decision,)] += 1
        self.deliveries += outcome.deliveries
        self.batch_seconds.observe(seconds)
        self.batch_events.observe(len(records))

    def render(self, gauges: Iterable[Gauge] = ()) -> str:
        """Every series in the Prometheus text exposition format."""
        lines = _counter(
            "feedamp_events_total",
            "Records handled, by event type and outcome.",
            "type,outcome",
            self.events,
        )
        lines += _counter(
            "feedamp_dead_letters_total",
            "Records sent to the dead-letter topic, by their topic.",
            "topic",
            self.dead_letters,
        )
        lines += _counter(
            "feedamp_decisions_total",
            "Decisions published (reposts, gifts, refusals), by kind.",
            "decision",
            self.decisions,
        )
        lines += _counter(
            "feedamp_fanout_deliveries_total",
            "Feed entries pushed by post and repost fan-out (followers reached).",
            "",
            {(): self.deliveries},
        )
        lines += self.batch_seconds.render(
            "feedamp_batch_seconds", "Time to handle one batch (writes, outputs, retries)."
        )
        lines += self.batch_events.render("feedamp_batch_events", "Records per batch.")
        lines += render_gauge(
            Gauge("feedamp_start_time_seconds", "Worker start time (Unix).", [({}, self.started)])
        )
        if self.watermark is not None:
            lag = max(0.0, time.time() - self.watermark / 1000)
            lines += render_gauge(Gauge(
                "feedamp_watermark_lag_seconds",
                "How far the event-time watermark reposts wait for is behind the clock.",
                [({}, lag)],
            ))  # fmt: skip
        for gauge in gauges:
            lines += render_gauge(gauge)
        return "\n".join(lines) + "\n"
