"""``feedamp decisions tail`` and ``feedamp dlq tail`` against a running worker: live
records, filtered by user or post, from the end or the beginning."""

from __future__ import annotations

import asyncio
import sys

import orjson
from feedamp.embedded.worker import worker_env
from feedamp.ops.tail import matcher

from .factory import Events
from .kafka import send, send_events


def test_matcher_looks_at_id_fields_or_raw_bytes():
    ev = b'{"type": "repost", "reposter_id": "bob", "post_id": "p1", "post_author_id": "al"}'
    assert matcher("bob", None)(ev) and matcher("al", "p1")(ev) and matcher(None, None)(ev)
    assert not matcher("p1", None)(ev) and not matcher(None, "bob")(ev)
    assert matcher("bob", None)(b"{broken bob") and not matcher("eve", None)(b"{broken bob")
    assert not matcher("bob", None)(None)


async def _start(settings, *argv: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "feedamp.cli", *argv, env=worker_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    line = await asyncio.wait_for(proc.stderr.readline(), 60)
    assert line.startswith(b"following"), line
    return proc


async def _lines(proc: asyncio.subprocess.Process) -> list[bytes]:
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err
    return out.splitlines()


async def test_decisions_tail_follows_new_decisions_of_one_user(worker, uid):
    s = worker.settings
    ev = Events()
    a, r, other = uid("a"), uid("r"), uid("other")
    p1, p2 = uid("p1"), uid("p2")
    await send_events(s, [ev.post(p1, a), ev.repost(p1, a, other)])  # before the tail: unseen
    proc = await _start(s, "decisions", "tail", "--user", r, "--limit", "2", "--idle", "60")
    await send_events(s, [ev.post(p2, a), ev.repost(p2, a, other), ev.repost(p1, a, r),
                          ev.repost(p2, a, r)])  # fmt: skip
    decisions = [orjson.loads(x) for x in await _lines(proc)]
    assert sorted((d["reposter_id"], d["post_id"]) for d in decisions) == sorted([(r, p1), (r, p2)])
    assert all(d["decision"] == "delivered" for d in decisions)


async def test_dlq_tail_from_the_beginning_filtered_by_post(worker, uid):
    s = worker.settings
    bad, other = uid("bad"), uid("other")
    for post in (other, bad):  # no author: dead-lettered
        value = orjson.dumps({"type": "post", "event_id": uid(post), "ts": 1, "post_id": post})
        await send(s, [(s.topics.posts, post.encode(), value)])
    proc = await _start(s, "dlq", "tail", "--from", "beginning", "--post", bad, "--limit", "1",
                        "--json", "--idle", "60")  # fmt: skip
    (line,) = await _lines(proc)
    letter = orjson.loads(line)
    assert letter["topic"] == s.topics.posts and bad in letter["value"]
    assert "missing field 'author_id'" in letter["reason"]


async def test_tail_stops_after_idle_seconds(worker):
    proc = await _start(worker.settings, "decisions", "tail", "--idle", "1")
    assert await _lines(proc) == []


async def test_ctrl_c_stops_a_tail_quietly(worker):
    import signal

    proc = await _start(worker.settings, "dlq", "tail")
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130 and err == b"" and out == b""
