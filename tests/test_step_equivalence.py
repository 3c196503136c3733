"""The slot-local steps decide exactly as the single scripts they replaced: random logs of
reposts and of gifts (random batch boundaries, copies of events within and across
batches, door refusals, suspended accounts, small code pools) go through the steps and
through the old scripts (kept in ``tests/reference/`` as the specification) into two
namespaces of one Redis, and every decision, reason, code, inbox and send count must be
equal."""

from __future__ import annotations

import random
from importlib.resources import files
from pathlib import Path

import orjson
import pytest
from feedamp.config import Caps, Settings
from feedamp.feeds.batch import context
from feedamp.feeds.repost_decisions import decide_reposts
from feedamp.feeds.scripts import Scripts
from feedamp.feeds.shop.campaigns import load_campaigns
from feedamp.feeds.shop.gifts import GiftStore
from feedamp.models.events import Gift, Repost

REFERENCE = Path(__file__).parent / "reference"
TRIALS = 25


def reference(redis, name: str):  # type: ignore[no-untyped-def]
    lua = files("feedamp.feeds").joinpath("lua")
    libs = [lua.joinpath(f"{lib}.lua").read_text() for lib in ("lib", "lib_account")]
    return redis.register_script("\n".join([*libs, (REFERENCE / f"{name}.lua").read_text()]))


def batches(rnd: random.Random, events: list) -> list[list]:
    out, i = [], 0
    while i < len(events):
        k = rnd.randint(1, 15)
        out.append(events[i : i + k])
        i += k
    return out


def repost_log(rnd: random.Random) -> list[Repost]:
    events: list[Repost] = []
    by_post: dict[str, list[str]] = {}
    ts = 1_000
    for n in range(rnd.randint(5, 60)):
        ts += rnd.choice([0, 1, 50, 200, 700])
        post = f"p{rnd.randrange(3)}"
        earlier = by_post.get(post, [])
        # Now and then a copy of an earlier repost, at a new time.
        repost = rnd.choice(earlier) if earlier and rnd.random() < 0.1 else f"r{n}"
        via = rnd.choice(earlier) if earlier and rnd.random() < 0.6 else None
        events.append(Repost(event_id=f"e{n}", ts=ts, repost_id=repost, post_id=post,
                             post_author_id="a", reposter_id=f"u{rnd.randrange(4)}",
                             comment="c" if rnd.random() < 0.5 else None,
                             via_repost_id=via))  # fmt: skip
        by_post.setdefault(post, []).append(repost)
    return events


async def test_repost_decisions_equal_the_single_script(redis, settings: Settings) -> None:
    old = reference(redis, "decide")
    caps = Caps(rate_max=3, rate_window_ms=1_000, frequently_forwarded_depth=3,
                forwarded_max=1, forwarded_window_ms=3_000, brake_reposts=4,
                brake_window_ms=2_000, friction=True)  # fmt: skip
    c, scripts, decided = caps, Scripts(redis), 0
    kinds: set[str] = set()
    seen: set[str] = set()
    limits = [c.frequently_forwarded_depth, c.rate_max, c.rate_window_ms, c.forwarded_max,
              c.forwarded_window_ms, c.brake_reposts, c.brake_window_ms, "1"]  # fmt: skip
    for trial in range(TRIALS):
        rnd = random.Random(trial)
        log = repost_log(rnd)
        cut = batches(rnd, log)
        doors = [{i: "suspended" for i in range(len(b)) if rnd.random() < 0.1} for b in cut]
        results = []
        for side in ("steps", "script"):
            s = settings.with_(key_prefix=f"{settings.key_prefix}{side}{trial}:", caps=caps)
            for p in range(3):
                vis = "followers" if p == 2 else "public"
                await redis.hset(f"{s.key_prefix}post:{{p{p}}}", mapping={"a": "a", "vis": vis})
            ctx, got = context(s), []
            for batch, door in zip(cut, doors, strict=True):
                if side == "steps":
                    made, failed = await decide_reposts(redis, scripts, s, ctx, batch, door)
                    assert failed == {}
                    got += [(d.repost_id, d.decision, d.depth, d.reasons) for d in made.values()]
                    continue
                order = sorted(range(len(batch)), key=lambda i: (batch[i].ts, batch[i].event_id))
                answers = {}
                for i in order:
                    ev = batch[i]
                    comment = "1" if ev.comment else "0"
                    answers[i] = (await old(args=[
                        *ctx, ev.post_id, ev.repost_id, ev.reposter_id, ev.via_repost_id or "",
                        ev.ts, comment, *limits, door.get(i, "")])).decode()  # fmt: skip
                for i in sorted(answers):
                    outcome, depth, reasons = answers[i].split("|")
                    got.append((batch[i].repost_id, outcome, int(depth),
                                tuple(r for r in reasons.split(",") if r)))  # fmt: skip
            results.append(got)
        assert results[0] == results[1], f"trial {trial}"
        decided += len(results[0])
        kinds |= {outcome for _, outcome, _, _ in results[0]}
        seen |= {r for _, _, _, found in results[0] for r in found}
    assert decided > 500
    assert {"refused", "rate_limited", "restricted", "delivered"} <= kinds
    assert {"user_rate", "forwarded_hourly", "virality_brake", "suspended"} <= seen


@pytest.mark.parametrize("way", ["at_once", "in_steps"])
async def test_gifts_equal_the_single_script(redis, settings: Settings, tmp_path, way) -> None:
    # at_once: the gifts script (a standalone Redis); in_steps: the slot-local steps one
    # pipeline each, as on a cluster.
    old = reference(redis, "gift")
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps({"campaigns": [
        {"id": "spring", "send_limit": 3, "offers": [
            {"id": "editor", "partner": "C", "title": "t", "codes": ["C1", "C2", "C3", "C4"]},
            {"id": "music", "partner": "B", "title": "t"}]},
        {"id": "small", "send_limit": 1, "offers": [
            {"id": "mic", "partner": "L", "title": "t", "codes": ["M1", "M2"]}]},
    ]}))  # fmt: skip
    catalog, users, outcomes = load_campaigns(str(path)), ("s0", "s1", "s2", "s3"), set()
    for trial in range(TRIALS):
        rnd = random.Random(trial)
        log: list[Gift] = []
        for n in range(rnd.randint(3, 40)):
            if log and rnd.random() < 0.1:  # redelivered
                log.append(rnd.choice(log))
                continue
            log.append(Gift(event_id=f"e{n}", ts=1_000 + n, gift_id=f"g{n}",
                            sender_id=rnd.choice(users), recipient_id=rnd.choice(users),
                            offer_id=rnd.choice(["editor", "music", "mic", "nope"]),
                            message=None))  # fmt: skip
        cut = batches(rnd, log)
        results = []
        for side in ("steps", "script"):
            s = settings.with_(key_prefix=f"{settings.key_prefix}g{side}{trial}:",
                               campaigns=str(path))  # fmt: skip
            await redis.hset(f"{s.key_prefix}account:{{s3}}", "susp", 1_010)
            store = GiftStore(redis, s, catalog)
            if way == "in_steps":
                store.scripts.gifts = None
            await store.seed()
            got = []
            for batch in cut:
                if side == "steps":
                    applied = await store.apply(batch)
                    assert applied.failures == []
                    got += [(d.gift_id, d.decision, d.reasons) for d in applied.decisions]
                    continue
                for ev in batch:
                    campaign, limit, has_codes, reasons = store._terms(ev)
                    answer = (await old(args=[
                        *context(s), ev.gift_id, ev.sender_id, ev.recipient_id, ev.offer_id,
                        campaign, "", ev.ts, limit, "1" if has_codes else "0",
                        ",".join(reasons), s.gift_inbox_cap])).decode()  # fmt: skip
                    decision, _, found = answer.partition("|")
                    got.append((ev.gift_id, decision, tuple(r for r in found.split(",") if r)))
            views = {u: (await redis.zrange(f"{s.key_prefix}gift_inbox:{{{u}}}", 0, -1),
                         await redis.zrange(f"{s.key_prefix}gifts_sent:{{{u}}}", 0, -1),
                         await redis.hgetall(f"{s.key_prefix}gift_sends:{{{u}}}"))
                     for u in users}  # fmt: skip
            codes = {g.gift_id: await redis.hget(f"{s.key_prefix}gift:{{{g.gift_id}}}", "code")
                     for g in log}  # fmt: skip
            results.append((got, views, codes))
        assert results[0] == results[1], f"trial {trial}"
        outcomes |= {reasons for _, _, reasons in results[0][0]}
    # The logs reached every outcome the steps can give.
    assert {(), ("send_limit",), ("codes_exhausted",), ("suspended",),
            ("recipient_suspended",), ("self_gift",), ("unknown_offer",)} <= outcomes  # fmt: skip
