"""``feedamp verify``: the live namespace against a fresh rebuild of the same log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import orjson
import pytest
from feedamp.embedded.worker import worker_env
from feedamp.feeds import Keys
from feedamp.feeds.namespace import Namespace
from feedamp.feeds.watermark import Watermark
from feedamp.ops.verify import compare_namespaces, wait_released

from .factory import Events
from .test_replay import play, story

#: Every test that writes runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")


async def test_compare_namespaces_is_type_aware(redis, settings):
    a, b = settings.key_prefix, settings.key_prefix.rstrip(":") + ".s0:"
    for prefix in (a, b):  # the same in both
        await redis.set(f"{prefix}same:{{s}}", "v")
        await redis.zadd(f"{prefix}z:{{same}}", {"m": 1.5})
    await redis.set(f"{a}str:{{x}}", "one")
    await redis.set(f"{b}str:{{x}}", "two")
    await redis.hset(f"{a}hash:{{x}}", mapping={"f": "1", "g": "2"})
    await redis.hset(f"{b}hash:{{x}}", mapping={"f": "1", "g": "3"})
    await redis.sadd(f"{a}set:{{x}}", "m1", "m2")
    await redis.sadd(f"{b}set:{{x}}", "m2", "m3")
    await redis.zadd(f"{a}zset:{{x}}", {"p1": 10, "p2": 20})
    await redis.zadd(f"{b}zset:{{x}}", {"p1": 10, "p2": 21})
    await redis.rpush(f"{a}list:{{x}}", "x", "y")
    await redis.rpush(f"{b}list:{{x}}", "x", "z", "w")
    await redis.set(f"{a}live_only:{{x}}", "1")
    await redis.sadd(f"{b}rebuild_only:{{x}}", "1")
    await redis.set(f"{a}kind:{{x}}", "1")
    await redis.sadd(f"{b}kind:{{x}}", "1")

    keys, differences = await compare_namespaces(redis, a, b)
    assert keys == 10
    found = {d.key: (d.kind, d.detail) for d in differences}
    assert found == {
        "hash:{x}": ("value", "hash: 'g': live='2' rebuild='3'"),
        "kind:{x}": ("type", "live string, rebuild set"),
        "list:{x}": ("value", "list: lengths 2/3, first difference at 1: live='y' rebuild='z'"),
        "live_only:{x}": ("only_in_live", "string"),
        "rebuild_only:{x}": ("only_in_rebuild", "set"),
        "set:{x}": ("value", "set: only in live: 'm1'; only in rebuild: 'm3'"),
        "str:{x}": ("value", "string: live='one' rebuild='two'"),
        "zset:{x}": ("value", "zset: 'p2': live=20.0 rebuild=21.0"),
    }


async def test_wait_released_waits_for_events_parked_before_the_start(redis, settings):
    parking, namespace = Watermark(redis, settings), Namespace.of(settings)
    keys = namespace.keys
    start = int(time.time() * 1000)
    # Parked with a time after verify started: not waited for.
    await redis.zadd(keys.parked(), {"later": start + 60_000})
    assert await wait_released(parking, namespace, start, timeout=0.0)
    # Parked with a time before: waited for; still there at the deadline, so not released.
    await redis.zadd(keys.parked(), {"earlier": start - 1})
    assert not await wait_released(parking, namespace, start, timeout=0.0)
    waiting = asyncio.create_task(wait_released(parking, namespace, start, timeout=60.0))
    await asyncio.sleep(0)  # the wait's first look finds it parked
    assert not waiting.done()
    await redis.zrem(keys.parked(), "earlier")  # released by the group
    assert await asyncio.wait_for(waiting, 10.0)
    assert await redis.zcard(keys.parked()) == 1  # the later one was not touched


def verify_command(settings) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "feedamp.cli", "verify", "--wait", "10"],
        env=worker_env(settings), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_verify_passes_on_a_clean_log_and_names_a_tampered_key(worker, redis, uid):
    s = worker.settings
    await play(s, story(Events(), uid))
    out = await asyncio.to_thread(verify_command, s)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no differences" in out.stdout
    # The live worker's watermark bookkeeping (a release lock held for a moment) comes and
    # goes on its own; the scratch namespace is what must be gone.
    moving = {f"{s.key_prefix}{name}".encode() for name in Keys.bookkeeping()}
    before = {k async for k in redis.scan_iter(match=f"{s.key_prefix}*")} - moving

    # Tamper with one key of the live namespace: an entry appears in dave's feed.
    keys = Keys(s.key_prefix)
    feed = next(k.decode() for k in before if k.decode().startswith(keys.feed(uid("dave"), 0)[:-1]))
    await redis.zadd(feed, {"forged": 1})
    out = await asyncio.to_thread(verify_command, s)
    assert out.returncode == 1, out.stdout + out.stderr
    name = feed[len(s.key_prefix) :]
    lines = [x for x in out.stdout.splitlines() if name in x]
    assert lines == [f"  value            {name}  zset: 'forged': live=1.0 rebuild=-"], out.stdout
    assert out.stdout.splitlines()[-1] == "1 difference by key kind: feed 1 (value 1)"
    # The scratch namespace is gone: only the live keys are left.
    after = {k async for k in redis.scan_iter(match=f"{s.key_prefix.rstrip(':')}*")} - moving
    assert after == before


@pytest.mark.single_layout  # no write path of its own
def test_likely_causes_and_summary_by_key_kind(settings):
    from feedamp.ops.audit import LogAudit
    from feedamp.ops.replay import ReplayStats
    from feedamp.ops.verify import Difference, Verification, format_verification
    from feedamp.streams.records import Record

    audit = LogAudit(settings)
    t = settings.topics

    def rec(topic: str, timestamp: int, **event) -> Record:
        return Record(topic, 0, 0, None, orjson.dumps(event), timestamp)

    audit([
        rec(t.reposts, 10_000, type="repost", event_id="e1", ts=1_000, repost_id="r1",
            post_id="p1"),  # 9 s late
        rec(t.reposts, 10_000, type="unrepost", event_id="e1", ts=9_900, repost_id="r1",
            post_id="p1"),  # e1 again, another type; on time
        rec(t.reposts, 10_000, type="repost", event_id="e2", ts=9_950, repost_id="r1",
            post_id="p2"),  # r1 again, another post
        rec(t.posts, 10_000, type="post", event_id="e1", ts=1),  # other topics: not looked at
    ])  # fmt: skip
    assert (audit.late, audit.reused) == (1, 2)
    assert audit.late_sample == ["e1 (9,000 ms late)"]
    assert audit.reused_sample == ["event_id e1 (repost, unrepost)", "repost_id r1 (posts p1, p2)"]

    found = [Difference("gift:{g1}", "only_in_live", "hash"),
             Difference("gift_inbox:{u}", "only_in_live", "zset"),
             Difference("decided:{p1}", "value", "hash: ..."),
             Difference("attempts:{u}", "value", "zset: ...")]  # fmt: skip
    result = Verification("fa:", "fa.s1:", ReplayStats(), 10, found, audit=audit, campaigns="")
    causes = result.causes()
    assert any("FEEDAMP_CAMPAIGNS is unset here" in c for c in causes)
    assert any("1 repost or gift event(s) reached the log later than the allowed lateness" in c
               for c in causes)  # fmt: skip
    assert any("2 id(s) reused across events" in c for c in causes)
    text = format_verification(result, 50)
    assert text.splitlines()[-1] == ("4 differences by key kind: attempts 1 (value 1); decided 1 "
                                     "(value 1); gift 1 (only_in_live 1); gift_inbox 1 "
                                     "(only_in_live 1)")  # fmt: skip
    assert "likely causes:" in text
    other = Verification("fa:", "fa.s1:", ReplayStats(), 10, found[:1], campaigns="/etc/c.json")
    assert "is FEEDAMP_CAMPAIGNS=/etc/c.json the workers' campaigns file" in other.causes()[0]
    clean = Verification("fa:", "fa.s1:", ReplayStats(), 10, [], audit=audit)
    assert clean.causes() == [] and format_verification(clean, 5).endswith("no differences")
