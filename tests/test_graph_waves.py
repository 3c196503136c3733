"""Graph events in waves (``feeds/graph.py``): a batch's follows, unfollows, blocks, mutes
and undos take their steps together, a wave at a time, and leave exactly the keys that
applying them one at a time, in the log's order, leaves."""

from __future__ import annotations

import itertools
import random

import pytest
from feedamp.config import Settings
from feedamp.feeds import FeedStore
from feedamp.feeds.graph import GraphEvent, waves
from feedamp.models.events import Event, Follow, Mute, Unfollow, Unmute
from redis.asyncio import Redis

from .factory import Events
from .snapshot import snapshot

USERS = [f"u{i}" for i in range(7)]
LAYOUTS = ("standalone", "cluster")
KINDS = ("follow", "follow", "follow", "unfollow", "block", "unblock", "mute", "unmute")


def _writers(event: Event) -> set[str]:
    if isinstance(event, Follow | Unfollow):
        return {event.follower_id}
    if isinstance(event, Mute | Unmute):
        return {event.user_id}
    return {event.user_id, event.target_id}  # type: ignore[attr-defined]


def graph_log(rng: random.Random, length: int) -> tuple[list[Event], list[GraphEvent]]:
    """Posts and reposts by every user with some follows (the setup), then a run of graph
    events between them; a few arrive later than events after them in time."""
    ev = Events(start_ms=1_700_000_000_000 + rng.randrange(10**6))
    setup: list[Event] = []
    posts = []
    for n, user in enumerate(USERS * 2):
        posts.append((f"p{n}", user))
        setup.append(ev.post(f"p{n}", user))
    for user in USERS:
        post, author = rng.choice([p for p in posts if p[1] != user])
        setup.append(ev.repost(post, author, user))
        setup.append(ev.follow(user, rng.choice([u for u in USERS if u != user])))
    log: list[GraphEvent] = []
    for _ in range(length):
        a, b = rng.sample(USERS, 2)
        kind = rng.choice(KINDS)
        made = ev.follow(a, b) if kind == "follow" else (
            ev.unfollow(a, b) if kind == "unfollow" else ev.hide(kind, a, b))  # fmt: skip
        log.append(made)  # type: ignore[arg-type]
    for _ in range(length // 8):  # late arrivals
        i = rng.randrange(len(log) - 1)
        log[i], log[i + 1] = log[i + 1], log[i]
    return setup, log


def test_waves_keep_the_order_of_events_that_share_a_user() -> None:
    for seed in range(50):
        _, log = graph_log(random.Random(seed), 60)
        found = waves(log)
        wave_of = {n: w for w, members in enumerate(found) for n in members}
        assert sorted(wave_of) == list(range(len(log)))
        assert all(members == sorted(members) for members in found)
        for user in USERS:  # each user's events, one after another
            chain = [n for n, event in enumerate(log) if user in _writers(event)]
            for i, j in itertools.pairwise(chain):
                if isinstance(log[i], Follow) and isinstance(log[j], Follow):
                    assert log[i].follower_id == user  # a run of follows may share a wave
                    assert wave_of[i] <= wave_of[j], (seed, i, j)
                else:
                    assert wave_of[i] < wave_of[j], (seed, i, j)


def test_a_run_of_follows_shares_a_wave_and_a_block_holds_both_sides_back() -> None:
    ev = Events()
    log = [ev.follow("a", "b"), ev.follow("a", "c"), ev.follow("d", "a"),
           ev.hide("block", "b", "a"), ev.follow("a", "e"), ev.hide("mute", "c", "d"),
           ev.unfollow("c", "a"), ev.follow("c", "b")]  # fmt: skip
    assert waves(log) == [[0, 1, 2, 5], [3, 6], [4, 7]]  # type: ignore[arg-type]


async def _apply(store: FeedStore, events: list[Event]) -> None:
    assert (await store.apply(events)).failures == []


async def _one_and_together(
    redis: Redis, settings: Settings, setup: list[Event], log: list[Event]
) -> tuple[dict[str, object], dict[str, object]]:
    """``setup`` then ``log`` applied one event at a time and as one batch, each in a
    namespace of its own: the two namespaces' keys."""
    one = FeedStore(redis, settings.with_(key_prefix=f"{settings.key_prefix}one:"))
    together = FeedStore(redis, settings.with_(key_prefix=f"{settings.key_prefix}all:"))
    for store in (one, together):
        await _apply(store, setup)
    for event in log:
        await _apply(one, [event])
    await _apply(together, log)
    return (await snapshot(redis, f"{settings.key_prefix}one:"),
            await snapshot(redis, f"{settings.key_prefix}all:"))  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
async def test_a_batch_of_graph_events_leaves_what_one_at_a_time_leaves(
    redis: Redis, settings: Settings, seed: int
) -> None:
    rng = random.Random(seed)
    setup, log = graph_log(rng, 40)
    assert max(len(wave) for wave in waves(log)) > 1  # events really go together
    expected, found = await _one_and_together(redis, settings, setup, list(log))
    assert any(name.startswith("pair:") for name in expected)
    assert found == expected


async def test_undos_in_one_wave_restore_what_one_at_a_time_restores(
    redis: Redis, settings: Settings
) -> None:
    """Unmutes and unblocks by several users in one wave (their restores' reads made
    together, their steps in one pipeline), of two targets at different times, each
    giving back the content that arrived while the pair looked hidden (a post of the
    target's and a repost of it, both later than the undo): the keys one at a time
    leaves, and the content back in every viewer's Following feed."""
    ev = Events()
    viewers, targets, reposter = ["v0", "v1", "v2", "v3"], ["t0", "t1"], "r"
    setup: list[Event] = [ev.follow(v, x) for v in viewers for x in (*targets, reposter)]
    hides = [("mute", "v0", "t0"), ("block", "v1", "t0"), ("mute", "v2", "t1"),
             ("block", "v3", "t1")]  # fmt: skip
    setup += [ev.hide(kind, v, t) for kind, v, t in hides]
    undone = ev.ts + 10_000  # the undos' times, before the content's
    ev.ts = undone + 60_000
    for n, target in enumerate(targets):
        setup += [ev.post(f"q{n}", target), ev.repost(f"q{n}", target, reposter)]
    log: list[Event] = []
    for n, (kind, viewer, target) in enumerate(hides):
        ev.ts = undone + 1000 * n - ev.step_ms  # each undo a second after the one before
        log.append(ev.hide(f"un{kind}", viewer, target))
    assert waves(log) == [[0, 1, 2, 3]]  # type: ignore[arg-type]
    expected, found = await _one_and_together(redis, settings, setup, log)
    assert found == expected
    for _, viewer, target in hides:
        post = f"q{targets.index(target)}".encode()
        held = {member for name, (_, rows) in expected.items()  # type: ignore[misc]
                if name.startswith(f"feed:{{{viewer}}}") for member, _ in rows}  # fmt: skip
        assert post in held, (viewer, target)
