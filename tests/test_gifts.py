"""Gifts against a real Redis, through the worker's pipeline: the send limit at its
boundary, code pools, every refusal reason, replay safety, and the campaigns file; each
on a standalone Redis and on a three-master Redis Cluster."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from feedamp.config import Settings
from feedamp.embedded.services import Service
from feedamp.feeds import FeedReader, FeedStore
from feedamp.feeds.connection import AnyRedis, close, connect
from feedamp.feeds.shop.campaigns import CampaignError, load_campaigns, parse_campaigns
from feedamp.streams import Pipeline, Record

from .conftest import make_settings
from .factory import Events, record_of
from .snapshot import snapshot

START, END = 1_700_000_000_000, 1_700_000_500_000


def catalog_doc(codes: list[str]) -> dict:
    return {"campaigns": [
        {"id": "spring", "send_limit": 3, "starts_at": START, "ends_at": END, "offers": [
            {"id": "editor", "partner": "CutPro", "title": "90-day trial of a video editor",
             "codes": codes},
            {"id": "music", "partner": "Beatbox", "title": "30 days of ad-free music"},
        ]},
        {"id": "open", "offers": [{"id": "mic", "partner": "Lav", "title": "20% off a mic"}]},
    ]}  # fmt: skip


@pytest.fixture(params=["standalone", "cluster"])
def layout(request: pytest.FixtureRequest) -> Service:
    """Every test here runs on a standalone Redis and on a three-master cluster, with the
    same expectations (gifts are slot-local steps, see feeds/shop/gifts.py)."""
    return request.getfixturevalue("redis_server" if request.param == "standalone"
                                   else "redis_cluster")  # fmt: skip


@pytest.fixture
def settings(broker: Service, layout: Service) -> Settings:
    return make_settings(broker, layout)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[AnyRedis]:
    client = connect(settings.redis_url)
    yield client
    await close(client)


@pytest.fixture
def campaigns_file(tmp_path: Path) -> Path:
    path = tmp_path / "campaigns.json"
    path.write_bytes(orjson.dumps(catalog_doc(["C1", "C2"])))
    return path


@pytest.fixture
def shop(redis, settings, campaigns_file):
    settings = settings.with_(campaigns=str(campaigns_file))
    pipeline = Pipeline(FeedStore(redis, settings), settings)
    reader = FeedReader(redis, key_prefix=settings.key_prefix, campaigns=str(campaigns_file))
    return settings, pipeline, reader


async def run(settings, pipeline, events):
    outcome = await pipeline.apply([record_of(settings, e, n) for n, e in enumerate(events)])
    assert outcome.dead_letters == []
    return {d.gift_id: (d.decision, d.reasons) for d in outcome.decisions}


async def test_send_limit_at_its_boundary(shop):
    settings, pipeline, reader = shop
    ev = Events(start_ms=START)
    gifts = [ev.gift(f"g{n}", "ann", f"friend{n}", "music", message=f"hi {n}") for n in range(4)]
    gifts.append(ev.gift("g-other", "ann", "friend0", "mic"))  # another campaign
    decisions = await run(settings, pipeline, gifts)
    assert [decisions[f"g{n}"] for n in range(4)] == [("accepted", ())] * 3 + [
        ("refused", ("send_limit",))
    ]
    assert decisions["g-other"] == ("accepted", ())
    sent = await reader.gifts_sent("ann")
    assert [g.gift_id for g in sent.items] == ["g-other", "g2", "g1", "g0"]
    assert sent.remaining == {"spring": 0, "open": 2}
    inbox = (await reader.gift_inbox("friend0")).items
    assert [(g.gift_id, g.offer_id, g.campaign_id, g.sender_id) for g in inbox] == [
        ("g-other", "mic", "open", "ann"), ("g0", "music", "spring", "ann")]  # fmt: skip
    assert inbox[1].message == "hi 0" and inbox[1].code is None
    assert (await reader.gift_inbox("friend3")).items == []


async def test_code_pool_hands_each_code_out_once(shop):
    settings, pipeline, reader = shop
    ev = Events(start_ms=START)
    gifts = [ev.gift(f"g{n}", f"sender{n}", "rita", "editor") for n in range(3)]
    decisions = await run(settings, pipeline, gifts)
    assert [decisions[f"g{n}"][0] for n in range(3)] == ["accepted", "accepted", "refused"]
    assert decisions["g2"][1] == ("codes_exhausted",)
    codes = sorted(g.code for g in (await reader.gift_inbox("rita")).items)
    assert codes == ["C1", "C2"]
    # A refused gift spent no send: the sender can still send an unlimited offer.
    assert (await reader.gifts_sent("sender2")).remaining["spring"] == 3


async def test_codes_added_to_the_file_later_join_the_pool_once(redis, settings, tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(orjson.dumps(catalog_doc(["A"])))
    s = settings.with_(campaigns=str(path))
    ev = Events(start_ms=START)
    await run(s, Pipeline(FeedStore(redis, s), s), [ev.gift("g0", "s0", "r", "editor")])
    path.write_bytes(orjson.dumps(catalog_doc(["A", "B"])))  # the operator adds a code
    for _ in range(2):  # two restarts
        pipeline = Pipeline(FeedStore(redis, s), s)
    decisions = await run(s, pipeline, [ev.gift(f"g{n}", f"s{n}", "r", "editor")
                                        for n in (1, 2)])  # fmt: skip
    assert decisions == {"g1": ("accepted", ()), "g2": ("refused", ("codes_exhausted",))}
    reader = FeedReader(redis, key_prefix=s.key_prefix)
    assert sorted(g.code for g in (await reader.gift_inbox("r")).items) == ["A", "B"]


async def test_refusal_reasons(shop):
    settings, pipeline, reader = shop
    ev = Events(start_ms=START)
    events = [
        ev.gift("unknown", "ann", "bob", "no-such-offer"),
        ev.gift("self", "ann", "ann", "music"),
        ev.gift("early", "ann", "bob", "music", ts=START - 1),
        ev.gift("late", "ann", "bob", "music", ts=END),
        ev.account("sus", "suspend"),
        ev.gift("from-suspended", "sus", "bob", "music"),
        ev.gift("to-suspended", "ann", "sus", "music"),
        ev.gift("fine", "ann", "bob", "music", ts=END - 1),
    ]
    decisions = await run(settings, pipeline, events)
    assert decisions == {
        "unknown": ("refused", ("unknown_offer",)),
        "self": ("refused", ("self_gift",)),
        "early": ("refused", ("outside_window",)),
        "late": ("refused", ("outside_window",)),
        "from-suspended": ("refused", ("suspended",)),
        "to-suspended": ("refused", ("recipient_suspended",)),
        "fine": ("accepted", ()),
    }
    assert [g.gift_id for g in (await reader.gift_inbox("bob")).items] == ["fine"]
    assert (await reader.gifts_sent("ann")).remaining["spring"] == 2


async def test_one_batch_judges_each_gift_of_an_account_by_its_own_time(shop):
    # The account is read once for the batch; each gift it sends or receives is judged
    # against that state at the gift's own time.
    settings, pipeline, _ = shop
    ev = Events(start_ms=START)
    events = [
        ev.account("kim", "suspend", ts=START + 50_000),
        ev.account("kim", "reinstate", ts=START + 90_000),
        ev.gift("from-before", "kim", "bob", "mic", ts=START + 10_000),
        ev.gift("to-before", "ann", "kim", "mic", ts=START + 20_000),
        ev.gift("from-during", "kim", "bob", "mic", ts=START + 60_000),
        ev.gift("to-during", "ann", "kim", "mic", ts=START + 70_000),
        ev.gift("both-during", "kim", "kim", "mic", ts=START + 80_000),
        ev.gift("from-after", "kim", "ann", "mic", ts=START + 95_000),
        ev.gift("to-after", "bob", "kim", "mic", ts=START + 99_000),
    ]
    assert await run(settings, pipeline, events) == {
        "from-before": ("accepted", ()),
        "to-before": ("accepted", ()),
        "from-during": ("refused", ("suspended",)),
        "to-during": ("refused", ("recipient_suspended",)),
        "both-during": ("refused", ("self_gift", "suspended", "recipient_suspended")),
        "from-after": ("accepted", ()),
        "to-after": ("accepted", ()),
    }


async def test_a_batch_parsed_ahead_applies_as_when_parsed_by_apply_and_again(shop, redis):
    # Replay parses a batch ahead and hands it to apply; a retry hands the same again.
    settings, pipeline, _ = shop
    ev = Events(start_ms=START)
    records = [
        record_of(settings, e, n)
        for n, e in enumerate(
            [ev.gift("p1", "ann", "bob", "music"), ev.gift("p2", "ann", "cid", "music")]
        )
    ]
    records.insert(1, Record(settings.topics.gifts, 0, 9, b"k", b"not json", START))
    parsed = pipeline.parse_all(records)
    first = await pipeline.apply(records, parsed)
    again = await pipeline.apply(records, parsed)
    plain = await pipeline.apply(records)
    assert len(parsed[0]) == 2 and len(parsed[1]) == 1  # left as it was
    for outcome in (first, again, plain):
        assert [d.record.offset for d in outcome.dead_letters] == [9]
        assert [(d.gift_id, d.decision) for d in outcome.decisions] == [
            ("p1", "accepted"), ("p2", "accepted")]  # fmt: skip


async def test_the_same_log_twice_spends_nothing_twice(shop, redis):
    settings, pipeline, _ = shop
    ev = Events(start_ms=START)
    log = [ev.gift(f"g{n}", "ann", f"f{n % 2}", "editor" if n < 2 else "music")
           for n in range(5)]  # fmt: skip
    first = await run(settings, pipeline, log)
    state = await snapshot(redis, settings.key_prefix)
    again = Pipeline(FeedStore(redis, settings), settings)  # a restarted worker
    assert await run(settings, again, log) == first
    assert await run(settings, again, log[2:] + log[:2]) == first  # reordered redelivery
    assert await snapshot(redis, settings.key_prefix) == state
    assert sum(d == "accepted" for d, _ in first.values()) == 3


async def test_inbox_pages_follow_the_cursor(shop):
    settings, pipeline, reader = shop
    ev = Events(start_ms=START)
    gifts = [ev.gift(f"g{n}", f"s{n}", "pat", "mic", ts=START + 10 * (n // 2)) for n in range(7)]
    await run(settings, pipeline, gifts)
    seen, cursor = [], None
    while True:
        page = await reader.gift_inbox("pat", limit=2, cursor=cursor)
        seen += [g.gift_id for g in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["g6", "g5", "g4", "g3", "g2", "g1", "g0"]


def test_sample_campaigns_file_is_valid():
    sample = Path(__file__).parent.parent / "config" / "campaigns.sample.json"
    catalog = load_campaigns(sample)
    assert catalog.offers["editor-90"].title == "90-day trial of a video editor"
    assert catalog.offers["music-30"].codes is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["campaigns"][0]["offers"][0].pop("title"), 'offers[0]: missing "title"'),
        (lambda d: d["campaigns"][1]["offers"][0].update(id="editor"), "already used"),
        (lambda d: d["campaigns"][0].update(ends_at=START), '"ends_at" must be after'),
        (lambda d: d["campaigns"][0].update(send_limit=0), "send_limit"),
        (lambda d: d["campaigns"][0].update(id="has space"), "forbidden character"),
        (lambda d: d["campaigns"][0]["offers"][0].update(codes=["A", "A"]), "duplicates"),
        (lambda d: d.pop("campaigns"), '"campaigns" list'),
    ],
)
def test_bad_campaigns_file_is_refused_with_the_place(change, message):
    doc = catalog_doc(["A"])
    change(doc)
    with pytest.raises(CampaignError, match=re.escape(message)) as err:
        parse_campaigns(doc, source="c.json")
    assert str(err.value).startswith("c.json")


def test_missing_campaigns_file_says_so(tmp_path):
    with pytest.raises(CampaignError, match="cannot read"):
        load_campaigns(tmp_path / "nope.json")
