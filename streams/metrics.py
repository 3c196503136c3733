"""Worker metrics through ``prometheus_client``, one registry per :class:`Metrics`.

Each worker app owns its registry (several apps may live in one process, as in tests), so
nothing is registered in the library's global default registry. The agent reports every
handled batch to :meth:`Metrics.observe`: the records, the :class:`Outcome` the batch
handler returned and how long handling took. Labels only take bounded values (known event
types, decision kinds, topic names), never ids or reasons.

Exposed series (names and labels are a contract with dashboards and alert rules in
``deploy/``):

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
- ``feedamp_start_time_seconds``; ``feedamp_watermark_lag_seconds`` once a release saw a
  watermark;
- gauges supplied at scrape time by :meth:`Metrics.add_gauges` (the web module's
  consumer lag and assigned partitions);
- the standard ``process_*`` and ``python_*`` series (process and platform collectors,
  plus the garbage collector's).

``_created`` series are turned off: they carry no information a dashboard uses.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import orjson
import prometheus_client
from feedamp.models import EVENT_TYPES
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .records import Outcome, Record

__all__ = ["CONTENT_TYPE", "Gauge", "Metrics", "event_type"]

prometheus_client.disable_created_metrics()

#: The exposition format :meth:`Metrics.render` writes (Prometheus text 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Upper bounds of the batch latency histogram, in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)  # fmt: skip
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


@dataclass(frozen=True)
class Gauge:
    """A gauge read at scrape time: name, help and one value per label set (every label
    set of one gauge has the same label names)."""

    name: str
    help: str
    samples: Sequence[tuple[Mapping[str, str | int], float]]

    def family(self) -> GaugeMetricFamily:
        """The gauge as a ``prometheus_client`` metric family."""
        names = list(self.samples[0][0]) if self.samples else []
        family = GaugeMetricFamily(self.name, self.help, labels=names)
        for labels, value in self.samples:
            family.add_metric([str(labels[n]) for n in names], value)
        return family


class _ScrapeTime(Collector):
    """Gauges computed when scraped: start time, watermark lag and the added sources."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self.metrics
        yield Gauge("feedamp_start_time_seconds", "Worker start time (Unix).",
                    [({}, m.started)]).family()  # fmt: skip
        if m.watermark is not None:
            lag = max(0.0, time.time() - m.watermark / 1000)
            yield Gauge("feedamp_watermark_lag_seconds",
                        "How far the event-time watermark reposts wait for is behind the clock.",
                        [({}, lag)]).family()  # fmt: skip
        for source in m.gauge_sources:
            try:
                gauges = list(source())
            except Exception:
                log.exception("metrics: a gauge source failed")
                continue
            for gauge in gauges:
                yield gauge.family()


class Metrics:
    """Counters and histograms of one worker process, in a registry of their own."""

    def __init__(self) -> None:
        self.started = time.time()
        #: The event-time watermark of the latest release (ms), when reposts are ordered.
        self.watermark: float | None = None
        self.gauge_sources: list[Callable[[], Iterable[Gauge]]] = []
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.events = Counter("feedamp_events", "Records handled, by event type and outcome.",
                              ["type", "outcome"], registry=r)  # fmt: skip
        self.dead_letters = Counter("feedamp_dead_letters",
                                    "Records sent to the dead-letter topic, by their topic.",
                                    ["topic"], registry=r)  # fmt: skip
        self.decisions = Counter("feedamp_decisions",
                                 "Decisions published (reposts, gifts, refusals), by kind.",
                                 ["decision"], registry=r)  # fmt: skip
        self.deliveries = Counter("feedamp_fanout_deliveries",
                                  "Feed entries pushed by post and repost fan-out "
                                  "(followers reached).", registry=r)  # fmt: skip
        self.batch_seconds = Histogram("feedamp_batch_seconds",
                                       "Time to handle one batch (writes, outputs, retries).",
                                       buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.batch_events = Histogram("feedamp_batch_events", "Records per batch.",
                                      buckets=SIZE_BUCKETS, registry=r)  # fmt: skip
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        r.register(_ScrapeTime(self))

    def add_gauges(self, source: Callable[[], Iterable[Gauge]]) -> None:
        """Call ``source`` at every scrape for more gauges (its failures are logged)."""
        self.gauge_sources.append(source)

    def observe(self, records: Sequence[Record], outcome: Outcome, seconds: float) -> None:
        """Count one handled batch; never raises (the agent must not stop over metrics)."""
        try:
            self._observe(records, outcome, seconds)
        except Exception:
            log.exception("metrics: could not count a batch")

    def _observe(self, records: Sequence[Record], outcome: Outcome, seconds: float) -> None:
        dead = {(d.record.topic, d.record.partition, d.record.offset) for d in outcome.dead_letters}
        # Counted here first, then one increment per series (a labelled child is looked up
        # under a lock: once per series and batch, not once per record).
        events: Tally[tuple[str, str]] = Tally()
        types = outcome.types
        for record in records:
            where = (record.topic, record.partition, record.offset)
            kind = types.get(where) or event_type(record)  # parsed once, if at all
            events[kind, DEAD_LETTER if where in dead else APPLIED] += 1
        for (kind, result), n in events.items():
            self.events.labels(kind, result).inc(n)
        topics = Tally(letter.record.topic for letter in outcome.dead_letters)
        for topic, n in topics.items():
            self.dead_letters.labels(topic).inc(n)
        for decision, n in Tally(d.decision for d in outcome.decisions).items():
            self.decisions.labels(decision).inc(n)
        self.deliveries.inc(outcome.deliveries)
        self.batch_seconds.observe(seconds)
        self.batch_events.observe(len(records))

    def render(self) -> str:
        """Every series in the Prometheus text exposition format (0.0.4)."""
        return generate_latest(self.registry).decode()
