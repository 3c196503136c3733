"""Consecutive runs of posts and reposts deliver as one stretch (feeds/store.py): each
run's decisions and origins in turn, then the stretch's deliveries together. A batch so
applied writes, decides and counts exactly what the same batch writes when each run is
applied on its own (its deliveries before the next run starts): random logs of posts
(some followers-only), reposts (some rate-limited, some of followers-only posts, chains
through other reposts), unreposts, deletions, follows, unfollows and blocks in between."""

from __future__ import annotations

import itertools
import random

import pytest
from feedamp.config import Caps
from feedamp.feeds import FeedStore
from feedamp.feeds.store import _run_kind
from feedamp.models.events import Event

from .factory import Events
from .snapshot import snapshot

#: Every test runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")


def random_log(rng: random.Random, uid) -> list[Event]:  # type: ignore[no-untyped-def]
    users = [uid(f"u{i}") for i in range(12)]
    ev = Events(step_ms=rng.choice([1000, 20_000]))
    log: list[Event] = [ev.follow(a, b) for a in users for b in users
                        if a != b and rng.random() < 0.4]  # fmt: skip
    posts: list[tuple[str, str]] = []
    reposts: list[tuple[str, str, str]] = []
    for n in range(120):
        kind = rng.random()
        if kind < 0.3 or not posts:
            post, author = uid(f"p{n}"), rng.choice(users)
            vis = "followers" if rng.random() < 0.2 else "public"
            log.append(ev.post(post, author, visibility=vis))
            posts.append((post, author))
        elif kind < 0.7:
            post, author = rng.choice(posts)
            reposter = rng.choice(users)
            via = rng.choice(reposts)[2] if reposts and rng.random() < 0.3 else None
            repost = ev.repost(post, author, reposter, rng.choice([None, "look"]), via=via,
                               repost_id=uid(f"r{n}"))  # fmt: skip
            log.append(repost)
            reposts.append((post, reposter, repost.repost_id))
        elif kind < 0.8 and reposts:
            post, reposter, _ = rng.choice(reposts)
            log.append(ev.unrepost(post, reposter))
        elif kind < 0.85:
            post, author = rng.choice(posts)
            log.append(ev.delete(post, author))
        else:
            a, b = rng.sample(users, 2)
            log.append(ev.graph(rng.choice(["follow", "unfollow", "hide", "follow"]), a, b,
                                rng))  # fmt: skip
    return log


def runs_of(log: list[Event]) -> list[list[Event]]:
    """``log`` cut into the store's runs (each applied on its own: no stretch)."""
    runs: list[list[Event]] = []
    for event in log:
        if runs and _run_kind(runs[-1][-1]) == _run_kind(event):
            runs[-1].append(event)
        else:
            runs.append([event])
    return runs


@pytest.mark.parametrize("seed", range(4))
async def test_a_stretch_writes_what_its_runs_write_one_by_one(redis, settings, uid, seed):
    rng = random.Random(seed)
    log = random_log(rng, uid)
    caps = Caps(rate_max=3, rate_window_ms=120_000, frequently_forwarded_depth=3)
    together = settings.with_(key_prefix=uid("s0:"), caps=caps)
    apart = settings.with_(key_prefix=uid("s1:"), caps=caps)
    one = await FeedStore(redis, together).apply(log)
    decisions, deliveries, failures = [], 0, []
    for run in runs_of(log):
        applied = await FeedStore(redis, apart).apply(run)
        decisions += applied.decisions
        deliveries += applied.deliveries
        failures += applied.failures
    assert not one.failures and not failures
    key = lambda d: d.event_id  # noqa: E731
    assert sorted(one.decisions, key=key) == sorted(decisions, key=key)
    assert one.deliveries == deliveries > 0
    assert {d.decision for d in decisions} >= {"delivered", "refused"}
    dump = await snapshot(redis, together.key_prefix)
    assert dump and dump == await snapshot(redis, apart.key_prefix)
    # the stretches were there: posts and reposts runs next to each other
    kinds = [_run_kind(run[0]) for run in runs_of(log)]
    assert any({a, b} == {"posts", "reposts"} for a, b in itertools.pairwise(kinds))
