"""``explain``: why a post is or is not in a user's feeds, for every reason an entry can
be present or absent, against a real Redis through the worker's pipeline."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest
from feedamp.embedded.worker import worker_env
from feedamp.feeds import FeedStore
from feedamp.feeds.explain import explain
from feedamp.feeds.keys import Keys, bucket_of
from feedamp.streams import Pipeline

from .factory import Events, record_of


@pytest.fixture
def world(redis, settings):
    return settings, Pipeline(FeedStore(redis, settings), settings)


async def apply(world, *events):
    settings, pipeline = world
    await pipeline.apply([record_of(settings, e, n) for n, e in enumerate(events)])


async def why(redis, world, user, post, **sizes):
    settings = world[0]
    return await explain(redis, user, post, key_prefix=settings.key_prefix,
                         feed_buckets=settings.feed_buckets, **sizes)  # fmt: skip


def said(x, feed: str, *parts: str) -> bool:
    """Some verdict of ``feed`` contains every one of ``parts``."""
    return any(all(p in v for p in parts) for v in x.verdicts[feed])


async def test_present_because_the_author_is_followed(redis, world, uid):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    await apply(world, ev.follow(u, a), ev.post(p, a))
    x = await why(redis, world, u, p)
    assert x.shown == {"following": True, "for_you": False}
    assert x.follows_author and x.author == a and x.post_known
    assert said(x, "following", "you follow the author", a)
    assert said(x, "for_you", "For You holds reposts only")
    assert "Following: SHOWN" in x.text() and "For You: NOT SHOWN" in x.text()


async def test_present_through_a_followed_reposter_with_time_depth_and_decision(redis, world, uid):
    ev = Events()
    u, a, r, p = uid("u"), uid("a"), uid("r"), uid("p")
    await apply(world, ev.follow(u, r), ev.post(p, a), ev.repost(p, a, r, comment="wow"))
    x = await why(redis, world, u, p)
    assert x.shown == {"following": True, "for_you": True}
    assert not x.follows_author
    (rp,) = x.reposts
    assert (rp.reposter, rp.depth, rp.decision, rp.reasons) == (r, 1, "delivered", [])
    assert rp.ts == ev.ts
    assert said(x, "following", "reposted by", r) and said(x, "for_you", "signals", r)
    assert f"reposted by {r} (you follow them)" in x.text() and "depth 1, delivered" in x.text()


async def test_absent_when_nothing_connects_the_user_to_the_post(redis, world, uid):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    await apply(world, ev.post(p, a))
    x = await why(redis, world, u, p)
    assert x.shown == {"following": False, "for_you": False}
    assert said(x, "following", "you do not follow the author", "nobody you follow")
    x = await why(redis, world, u, uid("never"))
    assert not x.post_known and said(x, "following", "no record of this post")


async def test_absent_for_its_author(redis, world, uid):
    ev = Events()
    a, p = uid("a"), uid("p")
    await apply(world, ev.post(p, a))
    assert said(await why(redis, world, a, p), "following", "you are its author")


async def test_deleted_post(redis, world, uid):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    await apply(world, ev.follow(u, a), ev.post(p, a), ev.delete(p, a))
    x = await why(redis, world, u, p)
    assert x.deleted_at == ev.ts and not x.shown["following"]
    assert said(x, "following", "deleted at")


@pytest.mark.parametrize(("action", "words"), [("block", "you block the author"),
                                              ("mute", "you mute the author")])  # fmt: skip
async def test_blocked_or_muted_author(redis, world, uid, action, words):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    await apply(world, ev.follow(u, a), ev.hide(action, u, a), ev.post(p, a))
    x = await why(redis, world, u, p)
    assert not x.shown["following"] and said(x, "following", words)


async def test_blocked_or_muted_reposter(redis, world, uid):
    ev = Events()
    u, a, r, p = uid("u"), uid("a"), uid("r"), uid("p")
    await apply(world, ev.follow(u, r), ev.hide("mute", u, r), ev.post(p, a),
                ev.repost(p, a, r))  # fmt: skip
    x = await why(redis, world, u, p)
    assert not x.shown["following"]
    assert said(x, "following", f"{r} reposted it, but you mute them")


async def test_author_suspended(redis, world, uid):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    await apply(world, ev.follow(u, a), ev.post(p, a))
    await apply(world, ev.account(a, "suspend"))
    x = await why(redis, world, u, p)
    assert x.author_suspended and not x.shown["following"]
    assert said(x, "following", "is suspended")


async def test_rate_limited_repost_of_a_followee(redis, world, uid):
    ev = Events()
    u, a, r = uid("u"), uid("a"), uid("r")
    posts = [uid(f"p{i}") for i in range(6)]
    await apply(world, ev.follow(u, r), *(ev.post(p, a) for p in posts))
    await apply(world, *(ev.repost(p, a, r) for p in posts))  # the sixth in a minute
    x = await why(redis, world, u, posts[5])
    (rp,) = x.reposts
    assert (rp.decision, rp.reasons) == ("rate_limited", ["user_rate"])
    assert not x.shown["following"]
    assert said(x, "following", f"{r}'s repost was rate_limited (user_rate)")


async def test_restricted_repost_reaches_following_but_not_for_you(redis, world, uid):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    chain = [uid(f"r{i}") for i in range(5)]
    await apply(world, ev.follow(u, chain[4]), ev.post(p, a))
    via = None
    for r in chain:  # depth 1..5: the fifth is forwarded many times
        await apply(world, ev.repost(p, a, r, via=via))
        via = f"r-{p}-{r}"
    x = await why(redis, world, u, p)
    (rp,) = x.reposts
    assert (rp.depth, rp.decision, rp.reasons) == (5, "restricted", ["forwarded_many_times"])
    assert x.shown == {"following": True, "for_you": False}
    assert x.following.labelled and said(x, "following", "forwarded_many_times")
    assert said(x, "for_you", "restricted (forwarded_many_times): Following only")


async def test_trimmed_by_the_feed_length_cap(redis, world, uid):
    settings, _ = world
    ev = Events()
    u, a = uid("u"), uid("a")
    small = settings.with_(feed_cap=settings.feed_buckets)  # one entry per bucket
    pipeline = Pipeline(FeedStore(redis, small), small)
    posts = [uid(f"p{i}") for i in range(40)]
    events = [ev.follow(u, a), *(ev.post(p, a) for p in posts)]
    await pipeline.apply([record_of(small, e, n) for n, e in enumerate(events)])
    keys = Keys(small.key_prefix)
    gone = []
    for p in posts:
        if await redis.zscore(keys.feed(u, bucket_of(p, small.feed_buckets)), p) is None:
            gone.append(p)
    assert gone
    x = await why(redis, world, u, gone[0], feed_cap=small.feed_cap)
    assert not x.shown["following"] and said(x, "following", "length cap")


async def test_cli_text_and_json(worker, redis, uid):
    s = worker.settings
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    pipeline = Pipeline(FeedStore(redis, s), s)
    await pipeline.apply([record_of(s, e, n) for n, e in enumerate([ev.follow(u, a),
                                                                    ev.post(p, a)])])  # fmt: skip
    run = [sys.executable, "-m", "feedamp.cli", "explain", u, p]
    out = await asyncio.to_thread(subprocess.run, [*run, "--json"], env=worker_env(s),
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = orjson.loads(out.stdout)
    assert report["shown"] == {"following": True, "for_you": False}
    assert report["author"] == a and report["follows_author"] is True
    out = await asyncio.to_thread(subprocess.run, run, env=worker_env(s),
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "Following: SHOWN" in out.stdout and f"you follow the author {a}" in out.stdout


async def test_the_author_blocking_the_reader_is_reported(redis, world, uid):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    await apply(world, ev.follow(u, a), ev.hide("block", a, u), ev.post(p, a))
    x = await why(redis, world, u, p)
    assert x.author_hidden == ["the author blocks you"]
    assert not x.shown["following"] and said(x, "following", "the author blocks you")


async def test_withdrawn_repost(redis, world, uid):
    ev = Events()
    u, a, r, p = uid("u"), uid("a"), uid("r"), uid("p")
    await apply(world, ev.follow(u, r), ev.post(p, a), ev.repost(p, a, r))
    await apply(world, ev.unrepost(p, r))
    x = await why(redis, world, u, p)
    (rp,) = x.reposts
    assert rp.withdrawn and x.shown == {"following": False, "for_you": False}
    assert said(x, "following", f"{r} reposted it, then withdrew the repost (unrepost)")
    assert said(x, "following", "nobody you follow reposted it")
    assert said(x, "for_you", "withdrew the repost")


async def test_suspended_reposter(redis, world, uid):
    ev = Events()
    u, a, r, p = uid("u"), uid("a"), uid("r"), uid("p")
    await apply(world, ev.follow(u, r), ev.post(p, a), ev.repost(p, a, r))
    await apply(world, ev.account(r, "suspend"))
    x = await why(redis, world, u, p)
    (rp,) = x.reposts
    assert rp.suspended and "reposter suspended" in x.text()
    if x.following.present:  # stored until the worker's clean-up: hidden when read
        assert said(x, "following", f"{r} is suspended")
    else:
        assert said(x, "following", f"{r} reposted it, but is suspended")


async def test_refused_repost_of_a_followers_only_post(redis, world, uid):
    ev = Events()
    u, a, r, p = uid("u"), uid("a"), uid("r"), uid("p")
    await apply(world, ev.follow(u, r), ev.follow(r, a), ev.post(p, a, visibility="followers"),
                ev.repost(p, a, r))  # fmt: skip
    x = await why(redis, world, u, p)
    assert x.visibility == "followers" and not x.shown["following"]
    assert said(x, "following", f"{r}'s repost was refused (followers_only)")


async def test_unfollowed_author(redis, world, uid):
    ev = Events()
    u, a, p = uid("u"), uid("a"), uid("p")
    await apply(world, ev.follow(u, a), ev.post(p, a), ev.unfollow(u, a))
    x = await why(redis, world, u, p)
    assert x.unfollowed_at == ev.ts and not x.shown["following"]
    assert said(x, "following", "you unfollowed the author at")
