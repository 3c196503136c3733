"""The worker's ``/healthz`` and ``/metrics``, JSON logs, and a Redis restart under a
running worker."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from feedamp.embedded.services import Service, free_port, start_redis
from feedamp.kafka.topics import ensure_topics
from feedamp.models.decisions import Decision, GiftDecision
from feedamp.streams import DeadLetter, Outcome, Record
from feedamp.streams.logs import JsonFormatter, log_format, logging_config
from feedamp.streams.metrics import Gauge, Metrics
from feedamp.streams.web import Health
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from .conftest import WorkerHandle, make_settings, wait_until
from .factory import Events
from .kafka import send, send_events

SAMPLE = re.compile(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$')


def samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text page, as ``name{a="x",b="y"}`` -> value (labels
    in name order; look keys up through :func:`key`)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def key(series: str) -> str:
    """``series`` (``name{b="y",a="x"}``) with its labels in name order, as in :func:`samples`."""
    if "{" not in series:
        return series
    name, _, rest = series.partition("{")
    pairs = re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', rest[:-1])
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(pairs)) + "}"


class WebWorker(WorkerHandle):
    """A worker with its web port open, its own Redis server, and JSON logs."""

    redis_server: Service

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}{path}"


@pytest.fixture(scope="module")
def web_worker(broker: Service, tmp_path_factory) -> Iterator[WebWorker]:
    redis_server = start_redis()
    settings = make_settings(broker, redis_server, web_port=free_port())
    asyncio.run(ensure_topics(settings))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEEDAMP_LOG_FORMAT", "json")
        handle = WebWorker(settings, tmp_path_factory.mktemp("web") / "worker.log")
    handle.redis_server = redis_server
    yield handle
    handle.stop()
    handle.redis_server.stop()


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()
    except OSError as exc:  # not listening yet
        return 0, {}, repr(exc)


async def get(url: str) -> tuple[int, dict[str, str], str]:
    """GET ``url`` in a thread: (status, headers, body); status 0 if unreachable."""
    return await asyncio.to_thread(_get, url)


async def test_healthz_is_ready_once_partitions_are_held(web_worker):
    async def ready() -> bool:
        return (await get(web_worker.url("/healthz")))[0] == 200

    await wait_until(ready, what="/healthz to answer 200")
    _, headers, body = await get(web_worker.url("/healthz"))
    assert headers["Content-Type"].startswith("application/json")
    s = web_worker.settings
    assert json.loads(body) == {
        "status": "ok", "partitions": len(s.topics.inputs) * s.partitions, "reasons": [],
    }  # fmt: skip


async def test_metrics_count_events_dead_letters_and_batches(web_worker, uid):
    s = web_worker.settings
    ev = Events()
    await send_events(s, [ev.follow(uid("bob"), uid("alice"))])

    async def followed() -> bool:  # before the post: a batch applies posts first
        text = (await get(web_worker.url("/metrics")))[2]
        return samples(text).get(key('feedamp_events_total{type="follow",outcome="applied"}')) == 1

    await wait_until(followed, what="the metrics to count the follow")
    await send_events(s, [ev.post(uid("p"), uid("alice"))])
    await send(s, [(s.topics.posts, b"k", b"{oops")])
    wanted = {
        'feedamp_events_total{type="follow",outcome="applied"}': 1,
        'feedamp_events_total{type="post",outcome="applied"}': 1,
        'feedamp_events_total{type="invalid",outcome="dead_letter"}': 1,
        f'feedamp_dead_letters_total{{topic="{s.topics.posts}"}}': 1,
        "feedamp_fanout_deliveries_total": 1,  # the post reached bob's feed
        "feedamp_assigned_partitions": len(s.topics.inputs) * s.partitions,
    }

    async def counted() -> bool:
        found = samples((await get(web_worker.url("/metrics")))[2])
        posts = f'topic="{s.topics.posts}"'
        lag = [v for k, v in found.items() if k.startswith("feedamp_consumer_lag{") and posts in k]
        return all(found.get(key(k)) == v for k, v in wanted.items()) and bool(lag) and not any(lag)

    await wait_until(counted, what="the metrics to count the batch and show the lag")
    status, headers, text = await get(web_worker.url("/metrics"))
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = text.splitlines()
    for line in lines:
        assert line.startswith("# ") or SAMPLE.match(line), line
    assert "# TYPE feedamp_batch_seconds histogram" in lines
    found = samples(text)
    assert found["feedamp_batch_seconds_count"] >= 1
    assert found['feedamp_batch_seconds_bucket{le="+Inf"}'] == found["feedamp_batch_seconds_count"]
    # Reposts are ordered (caps on): the watermark follows the clock once all is read.
    assert 0 <= found["feedamp_watermark_lag_seconds"] < 30
    # The standard process and Python series.
    assert found["process_resident_memory_bytes"] > 0 and found["process_cpu_seconds_total"] > 0
    assert any(k.startswith("python_info{") for k in found)
    assert not any(k.endswith("_created") or "_created{" in k for k in found)


async def test_redis_restart_is_waited_out_and_reported_by_healthz(web_worker, uid):
    s = web_worker.settings
    server = web_worker.redis_server
    server.stop()

    async def unready() -> bool:
        status, _, body = await get(web_worker.url("/healthz"))
        return status == 503 and any(r.startswith("redis:") for r in json.loads(body)["reasons"])

    await wait_until(unready, what="/healthz to report Redis down")
    post = uid("during-outage")
    await send_events(s, [Events().post(post, uid("author"))])

    async def retrying() -> bool:
        return "unavailable" in web_worker.log()

    await wait_until(retrying, what="the worker to retry the batch while Redis is down")
    web_worker.redis_server = start_redis(server.port)  # back, and empty

    async def ready() -> bool:
        return (await get(web_worker.url("/healthz")))[0] == 200

    await wait_until(ready, what="/healthz to recover")
    client = Redis.from_url(s.redis_url)
    try:

        async def applied() -> bool:
            author = await client.hget(f"{s.key_prefix}post:{{{post}}}", "a")
            return author == uid("author").encode()

        await wait_until(applied, what="the post sent during the outage to be applied")
    finally:
        await client.aclose()
    assert web_worker.proc.poll() is None


async def test_worker_writes_one_json_object_a_line(web_worker):
    async def logged() -> bool:
        return "dead letter" in web_worker.log()

    await wait_until(logged, what="the worker to log the dead letter")
    entries = [json.loads(line) for line in web_worker.log().splitlines() if line.strip()]
    assert entries and all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    dead = [e for e in entries if "dead letter" in e["message"]]
    assert dead[0]["level"] == "WARNING" and dead[0]["logger"] == "feedamp.worker"


def test_json_formatter_keeps_one_line_with_the_exception():
    formatter = JsonFormatter()
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.getLogger("feedamp.x").makeRecord(
            "feedamp.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
        )
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "feedamp.x"
    assert entry["message"] == "failed here"
    assert (
        entry["exception"].startswith("Traceback")
        and "ValueError: bad\nthing" in entry["exception"]
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["ts"])


def test_log_format_and_config():
    assert log_format({}) == "text" and log_format({"FEEDAMP_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="FEEDAMP_LOG_FORMAT must be text or json"):
        log_format({"FEEDAMP_LOG_FORMAT": "xml"})
    config = logging_config("json", logging.WARNING)
    assert config["root"]["level"] == "WARNING"
    assert config["formatters"]["default"]["()"].endswith("logs.JsonFormatter")


def test_metrics_render_decisions_and_escape_labels():
    metrics = Metrics()
    ok = Record("posts", 0, 1, b"k", b'{"type": "repost"}')
    bad = Record('po"sts', 0, 2, b"k", b"nope")
    decision = Decision("e", "r", "u", "p", 1, "rate_limited", ("user_rate",), 5)
    metrics.observe([ok, bad], Outcome([DeadLetter(bad, "x")], [decision], 5), 0.003)
    text = metrics.render()
    found = samples(text)
    assert found[key('feedamp_events_total{type="repost",outcome="applied"}')] == 1
    assert found[key('feedamp_events_total{type="invalid",outcome="dead_letter"}')] == 1
    assert 'feedamp_dead_letters_total{topic="po\\"sts"} 1.0' in text
    assert found['feedamp_decisions_total{decision="rate_limited"}'] == 1
    assert "# TYPE feedamp_fanout_deliveries_total counter" in text
    assert found["feedamp_fanout_deliveries_total"] == 5
    assert found['feedamp_batch_seconds_bucket{le="0.0025"}'] == 0
    assert found['feedamp_batch_seconds_bucket{le="0.005"}'] == 1
    assert found["feedamp_batch_events_sum"] == 2
    metrics.observe([ok], Outcome(deliveries=2000), 0.001)
    assert samples(metrics.render())["feedamp_fanout_deliveries_total"] == 2005


def test_metrics_count_every_record_and_decision_of_a_batch():
    metrics = Metrics()
    gifts = [Record("gifts", 0, n, b"k", b'{"type": "gift"}') for n in range(5)]
    bad = [Record("gifts", 1, n, b"k", b"nope") for n in range(3)]
    orders = [Record("purchases", 0, n, b"k", b'{"type": "purchase"}') for n in range(2)]
    decisions = [GiftDecision(f"e{n}", f"g{n}", "s", "accepted", (), 5) for n in range(4)]
    decisions.append(GiftDecision("e9", "g9", "s", "refused", ("send_limit",), 5))
    outcome = Outcome([DeadLetter(r, "x") for r in bad], decisions)
    outcome.types = {("gifts", 0, n): "gift" for n in range(4)}  # the fifth is parsed here
    for _ in range(2):
        metrics.observe(gifts + bad + orders, outcome, 0.001)
    found = samples(metrics.render())
    assert found[key('feedamp_events_total{type="gift",outcome="applied"}')] == 10
    assert found[key('feedamp_events_total{type="invalid",outcome="dead_letter"}')] == 6
    assert found[key('feedamp_events_total{type="purchase",outcome="applied"}')] == 4
    assert found['feedamp_dead_letters_total{topic="gifts"}'] == 6
    assert found['feedamp_decisions_total{decision="accepted"}'] == 8
    assert found['feedamp_decisions_total{decision="refused"}'] == 2


def test_each_metrics_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.observe([Record("posts", 0, 1, b"k", b'{"type": "post"}')], Outcome(), 0.001)
    first.add_gauges(lambda: [Gauge("feedamp_assigned_partitions", "held", [({}, 3)])])
    assert samples(first.render())[key('feedamp_events_total{type="post",outcome="applied"}')] == 1
    assert samples(first.render())["feedamp_assigned_partitions"] == 3
    assert key('feedamp_events_total{type="post",outcome="applied"}') not in samples(
        second.render()
    )
    assert "feedamp_assigned_partitions" not in samples(second.render())


def test_health_reasons():
    assert Health(4, False, None).ready
    health = Health(0, True, "ConnectionError: refused")
    assert not health.ready
    assert health.body() == {
        "status": "unavailable", "partitions": 0,
        "reasons": ["rebalancing", "no partitions assigned", "redis: ConnectionError: refused"],
    }  # fmt: skip
