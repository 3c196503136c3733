"""How a fan-out's segments become delivery calls (feeds/fanout.py): follower-major groups
that give every follower each of its events once, in the segments' order, in calls of at
most ``cap`` deliveries."""

from __future__ import annotations

import random

import pytest
from feedamp.feeds.fanout import EVENTS_PER_CALL, Group, Segment, _calls, _groups


def segment(n: int, followers: list[str], op: str = "repost") -> Segment:
    return Segment(op, f"p{n}", "a", 1000 + n, n % 8, followers, n, f"r{n % 3}", "f")


def delivered(calls: list[list[Group]]) -> dict[str, list[int]]:
    """Each follower's events (indexes), in the order the calls deliver them."""
    got: dict[str, list[int]] = {}
    for call in calls:
        for group in call:
            for follower in group.followers:
                got.setdefault(follower, []).extend(seg.index for seg in group.events)
    return got


def wanted(parts: list[Segment]) -> dict[str, list[int]]:
    want: dict[str, list[int]] = {}
    for seg in parts:
        for follower in seg.followers:
            want.setdefault(follower, []).append(seg.index)
    return want


@pytest.mark.parametrize("seed", range(20))
def test_every_follower_gets_its_events_once_in_order(seed):
    rng = random.Random(seed)
    people = [f"u{i}" for i in range(rng.randint(1, 300))]
    lists = [rng.sample(people, rng.randint(1, len(people))) for _ in range(rng.randint(1, 5))]
    # a source's events share its list; several sources may share followers
    parts = [segment(n, rng.choice(lists)) for n in range(rng.randint(1, 80))]
    cap = rng.choice([1, 7, 100, 2000])
    calls = _calls(parts, cap)
    assert delivered(calls) == wanted(parts)
    for call in calls:
        size = sum(len(g.events) * len(g.followers) for g in call)
        assert size <= max(cap, EVENTS_PER_CALL)
        assert all(len(g.events) <= EVENTS_PER_CALL and g.followers for g in call)


def test_one_source_repeated_is_one_group_with_shared_reads():
    followers = [f"u{i}" for i in range(1000)]
    parts = [segment(n, followers) for n in range(10)]
    assert [(len(g.events), len(g.followers)) for g in _groups(parts)] == [(10, 1000)]
    calls = _calls(parts, 2000)
    # 10 events to 200 followers a call: each follower's pair state read once per call
    assert [[(len(g.events), len(g.followers)) for g in call] for call in calls] == [
        [(10, 200)]
    ] * 5


def test_followers_in_different_sets_of_events_form_different_groups():
    parts = [segment(0, ["a", "b"]), segment(1, ["b", "c"]), segment(2, ["a", "b"])]
    groups = {tuple(g.followers): [s.index for s in g.events] for g in _groups(parts)}
    assert groups == {("a",): [0, 2], ("b",): [0, 1, 2], ("c",): [1]}


def test_group_argv_is_the_declared_layout():
    group = Group([segment(1, []), segment(2, [], "unpush")], ["x", "y"])
    assert group.argv() == [2, "repost", "p1", "a", 1001, "r1", "f",
                            "unpush", "p2", "a", 1002, "r2", "f", 2, "x", "y"]  # fmt: skip
