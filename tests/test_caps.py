"""Forwarding depth, labels and caps on a real Redis: each cap at its boundary."""

from __future__ import annotations

from feedamp.config import Caps
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.keys import bucket_of

from .factory import Events
from .snapshot import snapshot

#: Every test that writes runs on a standalone Redis and on a three-master cluster.
LAYOUTS = ("standalone", "cluster")


def store_for(redis, settings, **caps) -> tuple[FeedStore, FeedReader]:
    settings = settings.with_(caps=Caps(**caps))
    return FeedStore(redis, settings), FeedReader(redis, key_prefix=settings.key_prefix)


async def decide(store: FeedStore, *events) -> list[tuple[str, str, int, tuple[str, ...]]]:
    result = await store.apply(list(events))
    assert result.failures == []
    return [(d.repost_id, d.decision, d.depth, d.reasons) for d in result.decisions]


async def posts_in(reader: FeedReader, user: str, for_you: bool = False) -> list[str]:
    page = await (reader.for_you(user) if for_you else reader.following(user))
    return [i.post_id for i in page.items]


async def test_fifth_repost_in_a_minute_is_delivered_sixth_rate_limited(redis, settings):
    store, reader = store_for(redis, settings)
    ev = Events()
    await decide(store, ev.follow("fan", "bob"))
    t = ev.ts
    reposts = [ev.repost(f"p{i}", "alice", "bob", ts=t + i * 1000) for i in range(6)]
    decisions = await decide(store, *reposts)
    assert [d[1] for d in decisions] == ["delivered"] * 5 + ["rate_limited"]
    assert decisions[5][3] == ("user_rate",)
    assert "p5" not in await posts_in(reader, "fan")
    assert sorted(await posts_in(reader, "fan")) == ["p0", "p1", "p2", "p3", "p4"]
    # The window rolls by event time: 60 s after the 6th attempt, reposts flow again.
    (later,) = await decide(store, ev.repost("p6", "alice", "bob", ts=t + 65_000))
    assert later[1] == "delivered"


async def test_rate_counts_attempts_so_order_within_the_window_does_not_matter(redis, settings):
    """The 6th attempt by event time is limited, even when it arrives first."""
    store, _ = store_for(redis, settings)
    ev = Events()
    t = ev.ts
    reposts = [ev.repost(f"p{i}", "alice", "bob", ts=t + i * 1000) for i in range(6)]
    decisions = await decide(store, *reversed(reposts))  # one batch: decided in time order
    assert {d[0]: d[1] for d in decisions}["r-p5-bob"] == "rate_limited"
    assert sum(d[1] == "delivered" for d in decisions) == 5


async def test_depth_is_computed_and_depth_five_is_labelled_and_kept_out_of_for_you(
    redis, settings
):
    store, reader = store_for(redis, settings)
    ev = Events()
    chain = [f"u{i}" for i in range(1, 7)]
    await decide(store, *[ev.follow("fan", u) for u in chain], ev.post("p", "author"))
    reposts, via = [], None
    for u in chain:
        reposts.append(ev.repost("p", "author", u, via=via))
        via = reposts[-1].repost_id
    decisions = await decide(store, *reposts[:4])
    assert [(d[1], d[2]) for d in decisions] == [("delivered", n) for n in (1, 2, 3, 4)]
    (item,) = (await reader.following("fan")).items
    assert item.labels == ()
    assert await posts_in(reader, "fan", for_you=True) == ["p"]
    fifth, sixth = await decide(store, *reposts[4:])
    assert fifth[1:] == ("restricted", 5, ("forwarded_many_times",))
    assert sixth[1:3] == ("restricted", 6)
    (item,) = (await reader.following("fan")).items
    assert item.labels == ("forwarded_many_times",)
    assert item.reposted_by[:2] == ("u6", "u5")
    # For You still holds only the signals of the depth 1-4 reposts.
    (fy,) = (await reader.for_you("fan")).items
    assert set(fy.reposted_by) == {"u1", "u2", "u3", "u4"}


async def test_one_frequently_forwarded_repost_per_user_per_hour(redis, settings):
    store, reader = store_for(redis, settings, frequently_forwarded_depth=2)
    ev = Events()
    await decide(store, ev.follow("fan", "bob"))
    first = await decide(
        store, ev.repost("p1", "a", "x"), ev.repost("p1", "a", "bob", via="r-p1-x"),
        ev.repost("p2", "a", "y"), ev.repost("p2", "a", "bob", via="r-p2-y"),
    )  # fmt: skip
    assert [d[1:] for d in first if d[0].endswith("bob")] == [
        ("restricted", 2, ("forwarded_many_times",)),
        ("rate_limited", 2, ("forwarded_many_times", "forwarded_hourly")),
    ]
    assert await posts_in(reader, "fan") == ["p1"]
    t = ev.ts + 3_600_000
    later = await decide(
        store, ev.repost("p3", "a", "z", ts=t - 1), ev.repost("p3", "a", "bob", via="r-p3-z", ts=t)
    )
    assert later[1][1] == "restricted"  # an hour later: allowed again (still Following only)


async def test_virality_brake_sends_reposts_to_following_only(redis, settings):
    store, reader = store_for(redis, settings, brake_reposts=3)
    ev = Events()
    users = [f"u{i}" for i in range(5)]
    await decide(store, *[ev.follow("fan", u) for u in users], ev.post("hot", "star"))
    decisions = await decide(store, *[ev.repost("hot", "star", u) for u in users])
    assert [d[1] for d in decisions] == ["delivered"] * 3 + ["restricted"] * 2
    assert decisions[3][3] == ("virality_brake",)
    (item,) = (await reader.following("fan")).items
    assert item.reposted_by == ("u4", "u3", "u2", "u1", "u0")
    (fy,) = (await reader.for_you("fan")).items
    assert fy.reposted_by == ("u2", "u1", "u0")
    # The brake is a rolling 10 minutes of event time.
    (later,) = await decide(store, ev.repost("hot", "star", "u9", ts=ev.ts + 600_000))
    assert later[1] == "delivered"


async def test_reposts_of_followers_only_posts_are_refused(redis, settings):
    store, reader = store_for(redis, settings)
    ev = Events()
    await decide(store, ev.follow("fan", "bob"), ev.post("p", "alice", visibility="followers"))
    (decision,) = await decide(store, ev.repost("p", "alice", "bob"))
    assert decision[1:] == ("refused", 1, ("followers_only",))
    assert await posts_in(reader, "fan") == []
    assert await redis.zscore(store.keys.reposters("p"), "bob") is None


async def test_friction_mode_keeps_comment_less_reposts_out_of_for_you(redis, settings):
    store, reader = store_for(redis, settings, friction=True)
    ev = Events()
    await decide(store, ev.follow("fan", "bob"))
    decisions = await decide(
        store, ev.repost("p1", "a", "bob"), ev.repost("p2", "a", "bob", comment="why")
    )
    assert [d[1:] for d in decisions] == [("restricted", 1, ("no_comment",)), ("delivered", 1, ())]
    assert sorted(await posts_in(reader, "fan")) == ["p1", "p2"]
    assert await posts_in(reader, "fan", for_you=True) == ["p2"]


async def test_friction_is_off_by_default(redis, settings):
    store, _ = store_for(redis, settings)
    (decision,) = await decide(store, Events().repost("p1", "a", "bob"))
    assert decision[1] == "delivered"


async def test_a_redelivered_repost_gets_the_same_single_decision(redis, settings):
    store, _ = store_for(redis, settings, rate_max=1)
    ev = Events()
    log = [ev.repost("p1", "a", "bob"), ev.repost("p2", "a", "bob")]
    first = await decide(store, *log)
    assert [d[1] for d in first] == ["delivered", "rate_limited"]
    assert await decide(store, *log) == first
    assert await decide(store, log[1], log[0]) == first[::-1]


async def test_caps_off_delivers_everything_without_decisions(redis, settings):
    store, reader = store_for(redis, settings, enabled=False)
    ev = Events()
    await decide(store, ev.follow("fan", "bob"))
    t = ev.ts
    assert await decide(store, *[ev.repost(f"p{i}", "a", "bob", ts=t + i) for i in range(8)]) == []
    assert len(await posts_in(reader, "fan")) == 8


async def test_same_log_into_a_fresh_namespace_gives_same_decisions_and_feeds(redis, settings):
    ev = Events(step_ms=2_000)
    users = [f"u{i}" for i in range(6)]
    log = [ev.follow(f, u) for f in ("fan1", "fan2") for u in users]
    log += [ev.post(f"p{i}", "star") for i in range(4)]
    via = {}
    for n in range(30):  # reposts along chains, several per user per minute
        post, user = f"p{n % 4}", users[(n * 5) % 6]
        comment = "c" if n % 3 else None
        repost = ev.repost(post, "star", user, via=via.get(post), comment=comment,
                           repost_id=f"r{n}")  # fmt: skip
        via[post] = repost.repost_id
        log.append(repost)
    log += [ev.hide("mute", "fan1", "u3"), ev.unrepost("p1", "u5"), ev.unfollow("fan2", "u0")]
    one, two = settings, settings.with_(key_prefix="again-" + settings.key_prefix)
    live = (await FeedStore(redis, one).apply(log)).decisions
    replay = []
    for i in range(0, len(log), 7):  # other batch boundaries
        replay += (await FeedStore(redis, two).apply(log[i : i + 7])).decisions
    assert {d.decision for d in live} >= {"delivered", "rate_limited", "restricted"}
    assert replay == live
    assert await snapshot(redis, two.key_prefix) == await snapshot(redis, one.key_prefix)


async def test_a_reposters_for_you_signal_can_be_older_than_its_following_reason(redis, settings):
    """bob reposts with a comment (both feeds), then without (friction: Following only):
    Following sits at the later repost, For You keeps the earlier signal, in either order."""
    ev = Events()
    follow = ev.follow("fan", "bob")
    t = ev.ts
    with_comment = ev.repost("p", "a", "bob", comment="see", ts=t + 1000, repost_id="r1")
    bare = ev.repost("p", "a", "bob", ts=t + 2000, repost_id="r2")
    prefixes = []
    for n, order in enumerate(([with_comment, bare], [bare, with_comment])):
        store, reader = store_for(redis, settings.with_(key_prefix=f"o{n}-fa:"), friction=True)
        decisions = await decide(store, follow, *order)
        assert sorted(d[1] for d in decisions) == ["delivered", "restricted"]
        (item,) = (await reader.following("fan")).items
        (ranked,) = (await reader.for_you("fan")).items
        assert (item.ts, item.reposted_by, ranked.reposted_by) == (t + 2000, ("bob",), ("bob",))
        b = bucket_of("p", settings.feed_buckets)
        assert await redis.zscore(store.keys.for_you("fan", b), "p") == t + 1000
        # one list for both feeds: bob's Following time, then his For You signal's
        assert (
            await redis.hget(store.keys.via("fan", b), "p") == f"bob@{t + 2000}:{t + 1000}".encode()
        )
        prefixes.append(store.keys.prefix)
    # the feeds and their list are the same whichever arrived first (the comment kept is
    # not: reposts reach the store in event-time order, released past the watermark)
    feeds = [{k: v for k, v in (await snapshot(redis, p)).items()
              if k.startswith(("feed:", "foryou:", "via:"))} for p in prefixes]  # fmt: skip
    assert feeds[0] == feeds[1] and len(feeds[0]) == 3
