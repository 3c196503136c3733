"""Benchmark: gift, purchase and product view events per second through the worker.

Starts the embedded Tansu broker, a Redis server (tuned with ``REDIS_TUNING``) and a
``feedamp worker`` child process on free ports (``running_stack`` of ``bench/run.py``),
with a campaigns file written for the run: a campaign with a 3-gift send limit, a large
code pool and an unlimited offer; one with a higher limit, an unlimited offer and a small
pool that runs out; an ended campaign. Then, for gifts and for orders (``purchase`` and
``order_status`` events) and for product views separately, it measures in the same run:

(a) the worker: a realistic log of K events (many senders and recipients; orders that
    are paid, shipped, delivered, cancelled or refunded, some statuses late, repeated or
    illegal, some purchases credited to existing posts and reposts; users looking at a few
    products each, some twice, some from clips and reposts, a few views redelivered or
    late) is produced while the worker runs, timed from the first produce until Redis
    shows the last event of every sender (gifts), order (orders) or viewer (views)
    applied (events of one key share a partition and are applied in order, so then every
    event was) and the worker's ``/metrics`` count every
    record handled (its decisions published too). Best of ``runs``, fresh ids each time;
    gifts and orders alternate. Where the time went: CPU shares of each process, batches
    and the share of time inside the batch handler, Redis commands per event.
(b) the pipeline alone: the same kind of log through :class:`Pipeline` in this process,
    in worker-sized batches, into a key namespace of its own: no Kafka, no Faust, no
    decisions published (best of ``runs``). A worker far below this loses its time
    elsewhere.
(c) raw consumption, the ceiling: ``raw_consumption`` of ``bench/replay.py`` (aiokafka
    ``getmany`` from the beginning to the end of the topic, nothing done with the
    records), best of five, over everything (a) put on the topic.
(d) the Faust floor: the same worker with :meth:`Pipeline.apply` replaced by a counter
    (one ``INCRBY`` per batch), fed the same kind of log on topics of its own and timed
    the same way: what the Faust consumer, ``take_events`` and the batch handler cost
    with no work to do.

Ratios: worker events/s over raw consumption events/s of the same topic (the headline),
and over the Faust floor.

Run ``python bench/shop.py`` (``--quick``: under a minute). ``FEEDAMP_*`` variables reach
the worker and the measurements alike. The last line printed is ``key=value`` pairs:

    gift_ratio, order_ratio, view_ratio    worker events/s over raw consumption events/s
    gift_eps, order_eps, view_eps      worker events/s (best run), gifts; orders' events; views
    gift_raw_eps, ...                  raw aiokafka consumption of the same topic
    gift_floor_ratio, ...              worker events/s over the Faust floor's
    gift_floor_eps, ...                the Faust floor (pipeline stubbed out)
    gift_alone_eps, ...                the pipeline alone, in process, no Kafka
    gifts_accepted                     share of the measured gifts accepted

The same figures, with details, go to ``bench/results/shop.json``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaProducer
from feedamp.config import Settings
from feedamp.embedded.services import REDIS_TUNING
from feedamp.feeds import FeedStore, Keys
from feedamp.kafka.topics import ensure_topics
from feedamp.models import key_of, topic_of
from feedamp.models.events import Event, Post, Repost
from feedamp.streams import Pipeline, Record
from redis.asyncio import Redis
from replay import raw_consumption
from run import (
    ID_BASE,
    Phase,
    PhaseWatch,
    Stack,
    apart,
    fill_feeds,
    launch_script,
    quick_args,
    running_stack,
    scrape_metrics,
    write_report,
)

RESULTS = Path(__file__).resolve().parent / "results" / "shop.json"
POLL_INTERVAL = 0.01
#: Checks polled while a run goes on, before every check is made.
POLL_SAMPLE = 64
#: Hash fields looked at by one call of MISSING_LUA.
CHECKS_PER_CALL = 2000
WORKER_START_TIMEOUT = 90.0
RUN_TIMEOUT = 600.0
#: Raw consumption reads per topic; the best counts.
RAW_READS = 5
#: Redis key (in the stub worker's namespace) counting the records the stub was handed.
STUB_COUNTER = "bench:stub_records"
WORKER_FLAG = "--stub-worker"

# KEYS: hashes; ARGV: the field to look for in each (as many as KEYS). Returns the
# positions (0-based) of the hashes that lack their field.
MISSING_LUA = """
local missing = {}
for i, k in ipairs(KEYS) do
  if redis.call('HEXISTS', k, ARGV[i]) == 0 then missing[#missing + 1] = i - 1 end
end
return missing
"""

#: (offer id, share of gifts). ``retired-offer`` is in no campaign (refused unknown_offer).
GIFT_OFFERS = (("editor-90", 0.40), ("music-30", 0.30), ("mic-discount", 0.17),
               ("lens-kit", 0.08), ("cloud-100", 0.03), ("retired-offer", 0.02))  # fmt: skip
#: Gifts per sender, drawn uniformly from this list (the send limit of the main campaign
#: is 3, so a few senders run into it).
GIFTS_PER_SENDER = (1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 7)
SELF_GIFT_SHARE = 0.005
REDELIVERED_SHARE = 0.01
#: Codes in the small pool (``lens-kit``), per gift measured: about 3 in 4 of the offer's
#: gifts get one, the rest are refused (codes_exhausted).
SMALL_POOL_PER_GIFT = 0.06
#: The newest gift of a gift log is at least this old (ms) when the log is made: more than
#: the event-time order's allowed lateness (``FEEDAMP_CAP_LATENESS_MS``, 200 ms).
BACKLOG_MS = 1_000
#: (name, statuses in seq order, share of orders). "illegal" skips paid (flagged).
ORDER_PATHS = (
    ("delivered", ("paid", "shipped", "delivered"), 0.58),
    ("shipped", ("paid", "shipped"), 0.14),
    ("paid", ("paid",), 0.10),
    ("cancelled", ("cancelled",), 0.06),
    ("paid_then_cancelled", ("paid", "cancelled"), 0.03),
    ("refunded", ("paid", "shipped", "delivered", "refunded"), 0.06),
    ("illegal", ("shipped",), 0.03),
)
#: Shares of orders credited through a post, through a repost; of orders whose purchase
#: arrives after a status, with two statuses swapped, with a status delivered twice.
VIA_POST, VIA_REPOST = 0.30, 0.15
LATE_PURCHASE, SWAPPED, REPEATED = 0.03, 0.05, 0.03
#: Product views: views per viewer (drawn uniformly), shares of views from a clip, also
#: through a repost, looking again at a product already seen, arriving late (an older
#: time), redelivered.
VIEWS_PER_USER = (1, 1, 2, 2, 3, 3, 4, 5, 6, 8)
VIEW_VIA_POST, VIEW_VIA_REPOST, VIEW_AGAIN, VIEW_LATE = 0.40, 0.15, 0.20, 0.03
#: Graph events: events per user (drawn uniformly); the kinds of the steps before a user's
#: last (an undo goes to an earlier target of its kind, else the step is a follow); the
#: share of follows of a creator (whose recent posts the follow backfills).
GRAPH_PER_USER = (1, 1, 1, 2, 2, 3, 4, 6)
GRAPH_STEPS = (("follow", 0.62), ("unfollow", 0.12), ("mute", 0.08), ("unmute", 0.06),
               ("block", 0.07), ("unblock", 0.05))  # fmt: skip
FOLLOW_CREATOR = 0.3
#: Users per event, creators' posts and reposts (made before timing, for attribution).
USERS_PER_EVENT = 0.5
CREATOR_POSTS, CREATOR_REPOSTS = 600, 900


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one run."""

    gifts: int
    orders: int
    views: int
    #: Worker runs per kind (and Faust floor runs); the best counts.
    runs: int
    #: Graph events (``bench/light.py``; this benchmark measures none).
    graph: int = 0


FULL = Plan(gifts=20_000, orders=8_000, views=20_000, runs=2)
QUICK = Plan(gifts=4_000, orders=1_000, views=4_000, runs=1)
#: (kind, name in the summary) of this benchmark's logs.
KINDS = (("gifts", "gift"), ("orders", "order"), ("views", "view"))
#: Each log kind's topic, as the attribute of :class:`~feedamp.config.Topics`.
TOPIC_OF = {"gifts": "gifts", "orders": "purchases", "views": "product_views",
            "graph": "graph"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Log:
    """Messages of one timed run, and the hash fields that show it fully applied."""

    kind: str
    messages: list[tuple[str, bytes, bytes]]
    #: (hash key, field) of the last event of each key (sender, order): all applied when
    #: each exists. Empty for the Faust floor, which writes nothing.
    checks: list[tuple[str, str]]
    #: What the log should lead to (unique gifts, orders by final status...).
    expect: dict[str, int]


@dataclass(slots=True)
class Timed:
    """One timed run of a worker (the real one or the Faust floor)."""

    kind: str
    worker: str
    events: int
    seconds: float
    #: Until the broker had acknowledged every message of the run.
    produce_seconds: float
    events_per_s: float
    phase: Phase
    #: From the worker's /metrics: batches handled, records per batch, and the share of
    #: the run's wall time spent inside the batch handler.
    batches: int = 0
    records_per_batch: float = 0.0
    handler_busy: float = 0.0


@dataclass(slots=True)
class Report:
    """Everything one run measured."""

    mode: str
    plan: dict[str, int]
    #: Where the measured ``feedamp`` package was imported from.
    source: str
    worker: list[Timed] = field(default_factory=list)
    floor: list[Timed] = field(default_factory=list)
    #: kind -> events/s of the pipeline alone (in process, no Kafka).
    alone_per_s: dict[str, float] = field(default_factory=dict)
    #: kind -> (records, seconds) of each raw read of its topic.
    raw: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: kind -> outcome counts read back from Redis after the worker runs.
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    dead_letters: int = 0

    def best(self, runs: Sequence[Timed], kind: str) -> float:
        return max(t.events_per_s for t in runs if t.kind == kind)

    def raw_per_s(self, kind: str) -> float:
        return max(n / s for n, s in self.raw[kind])

    def summary(self) -> dict[str, float]:
        """The headline figures (the last printed line and the JSON ``summary``)."""
        out: dict[str, float] = {}
        for kind, name in KINDS:
            eps, raw = self.best(self.worker, kind), self.raw_per_s(kind)
            floor = self.best(self.floor, kind)
            out[f"{name}_ratio"] = round(eps / raw, 3)
            out[f"{name}_eps"] = round(eps)
            out[f"{name}_raw_eps"] = round(raw)
            out[f"{name}_floor_ratio"] = round(eps / floor, 3)
            out[f"{name}_floor_eps"] = round(floor)
            out[f"{name}_alone_eps"] = round(self.alone_per_s[kind])
        gifts = self.outcomes.get("gifts", {})
        decided = gifts.get("accepted", 0) + gifts.get("refused", 0)
        out["gifts_accepted"] = round(gifts.get("accepted", 0) / decided, 3) if decided else 0.0
        return out


# --- the campaigns file and the logs -------------------------------------------------------


def campaigns_doc(now_ms: int, codes: int, small_pool: int) -> dict[str, Any]:
    """Campaigns for the run: ``codes`` codes in the large pool, ``small_pool`` in the
    small one."""
    day = 86_400_000
    return {"campaigns": [
        {"id": "small-gestures", "send_limit": 3, "starts_at": now_ms - 30 * day,
         "ends_at": now_ms + 30 * day, "offers": [
             {"id": "editor-90", "partner": "CutPro", "title": "90-day trial of a video editor",
              "codes": [f"CUTPRO-{n:07d}" for n in range(codes)]},
             {"id": "music-30", "partner": "Beatbox", "title": "30 days of ad-free music"}]},
        {"id": "creator-week", "send_limit": 5, "offers": [
            {"id": "mic-discount", "partner": "Lavalier Co",
             "title": "20% off a clip-on microphone"},
            {"id": "lens-kit", "partner": "Glassworks", "title": "Phone lens kit",
             "codes": [f"LENS-{n:06d}" for n in range(small_pool)]}]},
        {"id": "winter-sale", "starts_at": now_ms - 120 * day, "ends_at": now_ms - 60 * day,
         "offers": [{"id": "cloud-100", "partner": "Nimbus", "title": "100 GB cloud storage"}]},
    ]}  # fmt: skip


class Ids:
    """Fresh 19-digit ids, so every run starts on keys nobody touched."""

    def __init__(self, start: int = ID_BASE) -> None:
        self._next = itertools.count(start)

    def one(self) -> str:
        return str(next(self._next))

    def take(self, n: int) -> list[str]:
        return [self.one() for _ in range(n)]


@dataclass(slots=True)
class Creators:
    """Posts and reposts that purchases can be credited to: (post id, author) and
    (repost id, reposter)."""

    posts: list[tuple[str, str]]
    reposts: list[tuple[str, str]]
    events: list[Event]


def make_creators(ids: Ids, rng: random.Random, start_ms: int) -> Creators:
    """Posts by a few hundred creators and reposts of them, one repost per reposter."""
    creators = ids.take(CREATOR_POSTS // 3)
    posts = [(ids.one(), rng.choice(creators)) for _ in range(CREATOR_POSTS)]
    reposts = [(ids.one(), ids.one()) for _ in range(CREATOR_REPOSTS)]
    events: list[Event] = [Post(event_id=ids.one(), ts=start_ms + n, post_id=p, author_id=a)
                           for n, (p, a) in enumerate(posts)]  # fmt: skip
    for n, (repost_id, reposter) in enumerate(reposts):
        post_id, author = rng.choice(posts)
        events.append(Repost(event_id=ids.one(), ts=start_ms + CREATOR_POSTS + n,
                             repost_id=repost_id, post_id=post_id, post_author_id=author,
                             reposter_id=reposter))  # fmt: skip
    return Creators(posts, reposts, events)


T = TypeVar("T")


def interleave(rng: random.Random, lists: Sequence[Sequence[T]]) -> Iterator[tuple[int, int, T]]:
    """The items of ``lists`` in a random interleaving that keeps each list's order, as
    (list index, index in the list, item): many users' events, each user's in order."""
    order = [n for n, items in enumerate(lists) for _ in items]
    rng.shuffle(order)
    cursors = [0] * len(lists)
    for n in order:
        at = cursors[n]
        cursors[n] += 1
        yield n, at, lists[n][at]


class LogMaker:
    """Realistic gift and order logs for one namespace and set of topics."""

    def __init__(self, settings: Settings, ids: Ids, creators: Creators, seed: int = 11) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.ids = ids
        self.creators = creators
        self.rng = random.Random(seed)
        self.ts = int(time.time() * 1000)
        offers, weights = zip(*GIFT_OFFERS, strict=True)
        self._offers, self._offer_weights = list(offers), list(weights)
        self._paths = [p[:2] for p in ORDER_PATHS]
        self._path_weights = [p[2] for p in ORDER_PATHS]

    def _message(self, event: dict[str, Any]) -> tuple[str, bytes, bytes]:
        return (topic_of(event["type"], self.settings.topics), key_of(event).encode(),
                orjson.dumps(event))  # fmt: skip

    def make(self, kind: str, plan: Plan) -> Log:
        """A log of ``kind`` (``gifts``, ``orders``, ``views`` or ``graph``) of the plan's
        size."""
        if kind == "views":
            return self.views(plan.views)
        if kind == "graph":
            return self.graph(plan.graph)
        return self.gifts(plan.gifts) if kind == "gifts" else self.orders(plan.orders)

    def views(self, k: int) -> Log:
        """About ``k`` product views (whole viewers), viewers interleaved, 1 ms apart. Each
        viewer's last view is of a product of its own, from a clip, so that its
        ``viewed_via`` field shows the viewer's events all applied (one viewer's events
        share a partition)."""
        rng, ids = self.rng, self.ids
        per_user: list[list[dict[str, Any]]] = []
        distinct = total = 0
        while total < k:
            user = ids.one()
            views: list[dict[str, Any]] = []
            for _ in range(rng.choice(VIEWS_PER_USER)):
                seen = [v["product_id"] for v in views]
                again = seen and rng.random() < VIEW_AGAIN
                view: dict[str, Any] = {
                    "type": "product_view", "event_id": ids.one(), "user_id": user,
                    "product_id": rng.choice(seen) if again else f"sku-{rng.randrange(5000)}",
                }  # fmt: skip
                if rng.random() < VIEW_VIA_POST:
                    view["via_post_id"] = rng.choice(self.creators.posts)[0]
                    if rng.random() < VIEW_VIA_REPOST / VIEW_VIA_POST:
                        view["via_repost_id"] = rng.choice(self.creators.reposts)[0]
                views.append(view)
            views.append({"type": "product_view", "event_id": ids.one(), "user_id": user,
                          "product_id": f"sku-last-{user}",
                          "via_post_id": rng.choice(self.creators.posts)[0]})  # fmt: skip
            if len(views) > 2 and rng.random() < REDELIVERED_SHARE * len(views):
                at = rng.randrange(len(views) - 1)
                views.insert(at + 1, views[at])
            distinct += len({v["product_id"] for v in views})
            per_user.append(views)
            total += len(views)
        messages = []
        for n, at, view in interleave(rng, per_user):
            if "ts" not in view:  # a redelivered view keeps its first time
                self.ts += 1
                late = at + 1 < len(per_user[n]) and rng.random() < VIEW_LATE
                view["ts"] = self.ts - (5000 if late else 0)
            messages.append(self._message(view))
        checks = [(self.keys.viewed_via(views[-1]["user_id"]), views[-1]["product_id"])
                  for views in per_user]  # fmt: skip
        return Log(
            "views",
            messages,
            checks,
            {"events": len(messages), "viewers": len(per_user), "distinct": distinct},
        )

    def gifts(self, k: int) -> Log:
        """About ``k`` gifts (whole senders), senders interleaved, 1 ms apart, the last one
        at least :data:`BACKLOG_MS` before the log is made: a backlog, as a worker meets
        after a stop or at a spike. Gifts wait for the event-time watermark, so times
        ahead of the clock (1 ms apart, made faster than real time) would hold the worker
        back until the clock reached them, and the figure would be the clock's pace."""
        rng, ids = self.rng, self.ids
        self.ts = min(self.ts, int(time.time() * 1000) - BACKLOG_MS - 2 * k)
        users = ids.take(max(100, int(k * USERS_PER_EVENT)))
        per_sender: list[list[dict[str, Any]]] = []
        total = 0
        while total < k:
            sender = ids.one()
            gifts = []
            for _ in range(rng.choice(GIFTS_PER_SENDER)):
                self_gift = rng.random() < SELF_GIFT_SHARE
                gift = {"type": "gift", "event_id": ids.one(), "gift_id": ids.one(),
                        "sender_id": sender,
                        "recipient_id": sender if self_gift else rng.choice(users),
                        "offer_id": rng.choices(self._offers, self._offer_weights)[0]}  # fmt: skip
                if rng.random() < 0.6:
                    gift["message"] = rng.choice(("Enjoy!", "for your edits", "happy birthday"))
                gifts.append(gift)
            if len(gifts) > 1 and rng.random() < REDELIVERED_SHARE * len(gifts):
                at = rng.randrange(len(gifts) - 1)  # never the last: it shows completion
                gifts.insert(at + 1, gifts[at])
            per_sender.append(gifts)
            total += len(gifts)
        messages = []
        for _, _, gift in interleave(rng, per_sender):
            if "ts" not in gift:  # a redelivered gift keeps its first time
                self.ts += 1
                gift["ts"] = self.ts
            messages.append(self._message(gift))
        checks = [(self.keys.gift(gifts[-1]["gift_id"]), "decision") for gifts in per_sender]
        unique = sum(len({g["gift_id"] for g in gifts}) for gifts in per_sender)
        return Log("gifts", messages, checks, {"events": len(messages), "gifts": unique})

    def graph(self, k: int) -> Log:
        """About ``k`` graph events (whole users), users interleaved, 1 ms apart: follows,
        a share of them of creators (whose recent posts each follow backfills), and
        unfollows, mutes, blocks and their undos of earlier targets (:data:`GRAPH_STEPS`).
        Each user's last event is a follow of a new target: its pair field shows the user's
        events applied (one user's events share a partition)."""
        rng, ids = self.rng, self.ids
        self.ts = min(self.ts, int(time.time() * 1000) - BACKLOG_MS - 2 * k)
        users = ids.take(max(100, int(k * USERS_PER_EVENT)))
        authors = sorted({author for _, author in self.creators.posts})
        steps, weights = zip(*GRAPH_STEPS, strict=True)
        undo = {"unfollow": "follow", "unmute": "mute", "unblock": "block"}
        per_user: list[list[dict[str, Any]]] = []
        checks: list[tuple[str, str]] = []
        total = 0
        while total < k:
            user, done = ids.one(), {"follow": [], "mute": [], "block": []}
            events: list[dict[str, Any]] = []
            count = rng.choice(GRAPH_PER_USER)
            for n in range(count):
                step = rng.choices(steps, weights)[0] if n < count - 1 else "follow"
                if step in undo:
                    if not done[undo[step]]:
                        step = "follow"
                    else:
                        target = done[undo[step]].pop(rng.randrange(len(done[undo[step]])))
                if step in done:
                    creator = rng.random() < FOLLOW_CREATOR and step == "follow"
                    target = rng.choice(authors if creator else users)
                    while target == user or target in done[step]:
                        target = rng.choice(users)
                    done[step].append(target)
                if step in ("follow", "unfollow"):
                    event = {"follower_id": user, "followee_id": target}
                else:
                    event = {"user_id": user, "target_id": target}
                events.append({"type": step, "event_id": ids.one(), **event})
            checks.append((self.keys.pair(user), target))
            per_user.append(events)
            total += len(events)
        messages = []
        for _, _, event in interleave(rng, per_user):
            self.ts += 1
            event["ts"] = self.ts
            messages.append(self._message(event))
        return Log("graph", messages, checks, {"events": len(messages)})

    def orders(self, n: int) -> Log:
        """``n`` orders: a purchase and its status events each, spread over time."""
        rng, ids = self.rng, self.ids
        buyers = ids.take(max(100, int(n * 3 * USERS_PER_EVENT)))
        sellers = ids.take(200)
        timeline: list[tuple[float, int, dict[str, Any]]] = []
        checks: list[tuple[str, str]] = []
        finals: Counter[str] = Counter()
        span = n * 3.0  # ms of event time the purchases are spread over
        for _ in range(n):
            order_id, buyer = ids.one(), rng.choice(buyers)
            name, statuses = rng.choices(self._paths, self._path_weights)[0]
            finals[name] += 1
            t = rng.uniform(0, span)
            purchase: dict[str, Any] = {
                "type": "purchase", "event_id": ids.one(), "order_id": order_id,
                "buyer_id": buyer, "product_id": f"sku-{rng.randrange(5000)}",
                "seller_id": rng.choice(sellers), "amount_cents": rng.randrange(299, 20_000),
                "currency": "EUR" if rng.random() < 0.7 else "USD",
            }  # fmt: skip
            via = rng.random()
            if via < VIA_POST:
                purchase["via_post_id"] = rng.choice(self.creators.posts)[0]
            elif via < VIA_POST + VIA_REPOST:
                purchase["via_repost_id"] = rng.choice(self.creators.reposts)[0]
            events = [(t, purchase)]
            for seq, status in enumerate(statuses, 1):
                t += rng.expovariate(8 / span)  # later in the log, mixed with other orders
                events.append((t, {"type": "order_status", "event_id": ids.one(),
                                   "order_id": order_id, "buyer_id": buyer, "status": status,
                                   "seq": seq}))  # fmt: skip
            for when, event in events:
                event["ts"] = self.ts + int(when)
            arrival = [when for when, _ in events]
            if len(events) > 1 and rng.random() < LATE_PURCHASE:
                arrival[0], arrival[1] = arrival[1], arrival[0]
            if len(events) > 2 and rng.random() < SWAPPED:
                i = rng.randrange(1, len(events) - 1)
                arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
            pairs = sorted(zip(arrival, (e for _, e in events), strict=True), key=_first)
            times, ordered = [p[0] for p in pairs], [p[1] for p in pairs]
            if len(ordered) > 2 and rng.random() < REPEATED:
                at = rng.randrange(1, len(ordered) - 1)  # never the last: it shows completion
                if ordered[at]["type"] == "order_status":
                    ordered.insert(at + 1, dict(ordered[at], event_id=ids.one()))
                    times.insert(at + 1, times[at])
            last = ordered[-1]
            field_ = (
                "bought" if last["type"] == "purchase" else f"ev:{last['status']}:{last['seq']}"
            )
            checks.append((self.keys.order(order_id), field_))
            # (arrival, position): one order's events keep their order on equal times.
            timeline += [
                (when, len(timeline) + i, e)
                for i, (when, e) in enumerate(zip(times, ordered, strict=True))
            ]
        self.ts += int(span) + 1000
        timeline.sort(key=lambda item: item[:2])
        messages = [self._message(event) for _, _, event in timeline]
        expect = {
            "events": len(messages),
            "orders": n,
            **{f"path_{k}": v for k, v in finals.items()},
        }
        return Log("orders", messages, checks, expect)


# --- the stub worker (the Faust floor) ------------------------------------------------------


def stub_worker_main() -> int:
    """``feedamp worker`` with :meth:`Pipeline.apply` replaced by a record counter."""
    from feedamp.cli import main as feedamp_main
    from feedamp.streams.records import Outcome

    async def count_only(self: Pipeline, records: Sequence[Record]) -> Outcome:
        key = f"{self.settings.key_prefix}{STUB_COUNTER}"
        await self.feeds.redis.incrby(key, len(records))
        return Outcome()

    Pipeline.apply = count_only  # type: ignore[method-assign]
    return feedamp_main(["worker", "--loglevel", "warning"])


#: The stub worker as a child process configured by the settings, logging to the path.
launch_stub = launch_script(__file__, WORKER_FLAG)


def floor_settings(settings: Settings) -> Settings:
    """Settings of the stub worker: its own consumer group, topics, namespace, web port."""
    return apart(settings, "floor")


# --- measuring ------------------------------------------------------------------------------


def scrape_batches(port: int) -> tuple[int, float, float]:
    """(batches, records, handler seconds) so far, from a worker's /metrics."""
    series = scrape_metrics(port)
    return (int(series.get("feedamp_batch_events_count", 0)),
            series.get("feedamp_batch_events_sum", 0.0),
            series.get("feedamp_batch_seconds_sum", 0.0))  # fmt: skip


class Bench:
    """Drives a worker through Kafka and watches Redis."""

    def __init__(self, stack: Stack, redis: Redis, producer: AIOKafkaProducer) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.redis = redis
        self.producer = producer
        self._missing = redis.register_script(MISSING_LUA)

    async def missing(self, checks: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The checks whose hash field does not exist yet."""
        found: list[tuple[str, str]] = []
        for start in range(0, len(checks), CHECKS_PER_CALL):
            part = checks[start : start + CHECKS_PER_CALL]
            keys, fields_ = zip(*part, strict=True)
            found += [part[i] for i in await self._missing(keys=list(keys), args=list(fields_))]
        return found

    async def wait_applied(self, checks: Sequence[tuple[str, str]], timeout: float) -> None:
        """Return once every check holds: a sample first, then all, then those left."""
        deadline = time.monotonic() + timeout
        sample = random.sample(list(checks), min(POLL_SAMPLE, len(checks)))
        for group in (sample, checks):
            pending: Sequence[tuple[str, str]] = group
            while pending := await self.missing(pending):
                self._check(deadline, f"{len(pending)} events to be applied")
                await asyncio.sleep(POLL_INTERVAL)

    async def wait_counted(self, want: int, timeout: float) -> None:
        """Return once the stub worker has been handed ``want`` records in all."""
        key = f"{self.settings.key_prefix}{STUB_COUNTER}"
        deadline = time.monotonic() + timeout
        while int(await self.redis.get(key) or 0) < want:
            self._check(deadline, f"the stub worker to count {want} records")
            await asyncio.sleep(POLL_INTERVAL)

    def _check(self, deadline: float, what: str) -> None:
        self.stack.check_worker()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}\n{self.stack.log()}")

    async def wait_handled(self, want: float, timeout: float) -> None:
        """Return once the worker's /metrics count ``want`` records handled in all (the
        batch handler returned: Redis written, dead letters and decisions published)."""
        deadline = time.monotonic() + timeout
        while (await asyncio.to_thread(scrape_batches, self.settings.web_port))[1] < want:
            self._check(deadline, f"the worker to finish handling {want:.0f} records")
            await asyncio.sleep(POLL_INTERVAL)

    async def send(self, messages: Sequence[tuple[str, bytes, bytes]]) -> list[asyncio.Future]:
        """Hand ``messages`` to the producer; the futures resolve when the broker has them."""
        return [await self.producer.send(t, value=v, key=k) for t, k, v in messages]

    async def timed(self, log: Log, worker: str, counted: int = 0) -> Timed:
        """Produce ``log`` and time it until applied and handled (``counted``: the stub
        worker's count to wait for instead of the checks). Redis shows the last batch
        applied before the worker has published its decisions, so once it does, the
        worker's own count of records handled is polled until it covers the log."""
        port = self.settings.web_port
        before = await asyncio.to_thread(scrape_batches, port)
        watch = await PhaseWatch.start(self.redis, {**self.stack.pids, "bench": os.getpid()})
        start = time.perf_counter()
        acks = await self.send(log.messages)
        produced = asyncio.ensure_future(_acked(acks, start))
        if counted:
            await self.wait_counted(counted, RUN_TIMEOUT)
        else:
            await self.wait_applied(log.checks, RUN_TIMEOUT)
        await self.wait_handled(before[1] + len(log.messages), RUN_TIMEOUT)
        seconds = time.perf_counter() - start
        phase = await watch.stop(seconds)
        produce_seconds = await produced
        after = await asyncio.to_thread(scrape_batches, port)
        batches, records, busy = (a - b for a, b in zip(after, before, strict=True))
        events = len(log.messages)
        per_batch = records / batches if batches else 0.0
        return Timed(log.kind, worker, events, seconds, produce_seconds, events / seconds, phase,
                     int(batches), per_batch, busy / seconds)  # fmt: skip

    async def warm_up(self, maker: LogMaker, counted: bool = False) -> float:
        """Wait until the worker has joined and applies (or counts) a gift and an order;
        return how long that took. The first gift also seeds the code pools."""
        start = time.perf_counter()
        logs = [maker.gifts(1), maker.orders(1), maker.views(1)]
        messages = [m for log in logs for m in log.messages]
        await asyncio.gather(*await self.send(messages))
        if counted:
            await self.wait_counted(len(messages), WORKER_START_TIMEOUT)
        else:
            await self.wait_applied([c for log in logs for c in log.checks], WORKER_START_TIMEOUT)
        return time.perf_counter() - start


async def _acked(acks: Sequence[asyncio.Future], start: float) -> float:
    await asyncio.gather(*acks)
    return time.perf_counter() - start


async def pipeline_alone(settings: Settings, redis: Redis, log: Log) -> float:
    """Events/s of ``log`` through :class:`Pipeline` in this process, in batches of the
    worker's size, into ``settings``' namespace (which must hold the creators)."""
    pipeline = Pipeline(FeedStore(redis, settings), settings)
    await pipeline.gifts.seed()
    records = [Record(topic, 0, n, key, value, None)
               for n, (topic, key, value) in enumerate(log.messages)]  # fmt: skip
    size = settings.batch_size
    start = time.perf_counter()
    for at in range(0, len(records), size):
        outcome = await pipeline.apply(records[at : at + size])
        if outcome.dead_letters:
            raise RuntimeError(f"dead letter: {outcome.dead_letters[0].reason}")
    return len(records) / (time.perf_counter() - start)


async def gift_outcomes(redis: Redis, keys: Keys, logs: Sequence[Log]) -> dict[str, int]:
    """Decisions and refusal reasons of every gift of ``logs``, read back from Redis."""
    ids = {orjson.loads(v)["gift_id"] for log in logs for _, _, v in log.messages}
    found: Counter[str] = Counter()
    for part in _chunks(sorted(ids), 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for gift_id in part:
                pipe.hmget(keys.gift(gift_id), "decision", "reasons")
            for decision, reasons in await pipe.execute():
                found[_text(decision)] += 1
                for reason in _text(reasons).split(","):
                    if reason and reason != "-":
                        found[f"reason_{reason}"] += 1
    return dict(found)


async def view_outcomes(redis: Redis, keys: Keys, logs: Sequence[Log]) -> dict[str, int]:
    """Viewers and the products in their Looked at lists, read back from Redis."""
    users = {orjson.loads(v)["user_id"] for log in logs for _, _, v in log.messages}
    found: Counter[str] = Counter()
    for part in _chunks(sorted(users), 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for user in part:
                pipe.zcard(keys.viewed(user))
            for n in await pipe.execute():
                found["viewers"] += 1
                found["products"] += n
    return dict(found)


async def order_outcomes(redis: Redis, keys: Keys, logs: Sequence[Log]) -> dict[str, int]:
    """Final statuses and flags of every order of ``logs``, read back from Redis."""
    ids = {orjson.loads(v)["order_id"] for log in logs for _, _, v in log.messages}
    found: Counter[str] = Counter()
    for part in _chunks(sorted(ids), 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for order_id in part:
                pipe.hmget(keys.order(order_id), "status", "flags", "credited")
            for status, flags, credited in await pipe.execute():
                found[f"status_{_text(status)}"] += 1
                if flags:
                    found[f"flag_{_text(flags)}"] += 1
                if credited:
                    found["credited"] += 1
    return dict(found)


def _first(pair: tuple[float, Any]) -> float:
    return pair[0]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for at in range(0, len(items), size):
        yield items[at : at + size]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return value.decode() if isinstance(value, bytes) else str(value)


async def run_measurements(stack: Stack, plan: Plan, report: Report) -> None:
    """Every measurement: the worker's runs, the pipeline alone, raw reads, the floor."""
    settings = stack.settings
    redis = Redis.from_url(settings.redis_url)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=0
    )
    await producer.start()
    try:
        bench = Bench(stack, redis, producer)
        ids, rng = Ids(), random.Random(5)
        creators = make_creators(ids, rng, int(time.time() * 1000) - 86_400_000)
        alone = settings.with_(key_prefix=f"{settings.key_prefix}alone:")
        for target in (settings, alone):
            await fill_feeds(FeedStore(redis, target), creators.events)
        maker = LogMaker(settings, ids, creators)
        say(f"worker ready after {await bench.warm_up(maker):.1f} s")
        logs: dict[str, list[Log]] = {"gifts": [], "orders": [], "views": []}
        for _ in range(plan.runs):
            for kind in ("gifts", "orders", "views"):
                log = maker.make(kind, plan)
                logs[kind].append(log)
                result = await bench.timed(log, "worker")
                report.worker.append(result)
                print_timed(result)
        report.outcomes = {
            "gifts": await gift_outcomes(redis, maker.keys, logs["gifts"]),
            "orders": await order_outcomes(redis, maker.keys, logs["orders"]),
            "views": await view_outcomes(redis, maker.keys, logs["views"]),
        }
        check_outcomes(report.outcomes, logs)
        for kind, outcome in report.outcomes.items():
            say(f"{kind} outcomes: {dict(sorted(outcome.items()))}")
        alone_maker = LogMaker(alone, ids, creators, seed=12)
        for kind in ("gifts", "orders", "views"):
            rates = [await pipeline_alone(alone, redis, alone_maker.make(kind, plan))
                     for _ in range(plan.runs)]  # fmt: skip
            report.alone_per_s[kind] = max(rates)
            say(f"{kind}, pipeline alone (in process, no Kafka): best {max(rates):,.0f} "
                f"events/s (runs: {', '.join(f'{r:,.0f}' for r in rates)})")  # fmt: skip
        for kind, _ in KINDS:
            topic = getattr(settings.topics, TOPIC_OF[kind])
            report.raw[kind] = [await raw_consumption(settings, [topic]) for _ in range(RAW_READS)]
            best = report.raw_per_s(kind)
            count = report.raw[kind][0][0]
            say(f"{kind}, raw aiokafka consumption of {topic!r}: {count:,} records, best "
                f"{best:,.0f} records/s (reads: "
                f"{', '.join(f'{s:.2f} s' for _, s in report.raw[kind])})")  # fmt: skip
        await measure_floor(bench, plan, ids, creators, report)
        report.dead_letters = stack.dead_letters()
    finally:
        await producer.stop()
        await redis.aclose()


async def measure_floor(bench: Bench, plan: Plan, ids: Ids, creators: Creators,
                        report: Report) -> None:  # fmt: skip
    """The stub worker's runs on topics of its own (the real worker is stopped first)."""
    settings = floor_settings(bench.settings)
    await ensure_topics(settings)
    bench.stack.switch_worker(settings, "worker-floor.log", launch_stub)
    bench.settings = settings
    maker = LogMaker(settings, ids, creators, seed=13)
    say(f"Faust floor (pipeline stubbed out): worker ready after "
        f"{await bench.warm_up(maker, counted=True):.1f} s")  # fmt: skip
    counted = int(await bench.redis.get(f"{settings.key_prefix}{STUB_COUNTER}") or 0)
    for _ in range(plan.runs):
        for kind in ("gifts", "orders", "views"):
            log = maker.make(kind, plan)
            counted += len(log.messages)
            result = await bench.timed(log, "floor", counted=counted)
            report.floor.append(result)
            print_timed(result)


def check_outcomes(outcomes: dict[str, dict[str, int]], logs: dict[str, list[Log]]) -> None:
    """Raise unless every gift was decided and every order ended as its path says."""
    gifts = outcomes["gifts"]
    want = sum(log.expect["gifts"] for log in logs["gifts"])
    if gifts.get("accepted", 0) + gifts.get("refused", 0) != want:
        raise RuntimeError(f"{want} gifts produced, decided: {gifts}")
    orders = outcomes["orders"]
    paths: Counter[str] = Counter()
    for log in logs["orders"]:
        paths.update({k.removeprefix("path_"): v for k, v in log.expect.items()
                      if k.startswith("path_")})  # fmt: skip
    status_of = {"delivered": "delivered", "shipped": "shipped", "paid": "paid",
                 "cancelled": "cancelled", "paid_then_cancelled": "cancelled",
                 "refunded": "refunded", "illegal": "placed"}  # fmt: skip
    expected: Counter[str] = Counter()
    for path, count in paths.items():
        expected[f"status_{status_of[path]}"] += count
    got = Counter({k: v for k, v in orders.items() if k.startswith("status_")})
    if got != expected:
        raise RuntimeError(f"order statuses {dict(got)}, expected {dict(expected)}")
    if orders.get("flag_illegal_transition", 0) != paths["illegal"]:
        raise RuntimeError(f"illegal transitions flagged: {orders}, expected {paths['illegal']}")
    views = outcomes["views"]
    want_views = {"viewers": sum(log.expect["viewers"] for log in logs["views"]),
                  "products": sum(log.expect["distinct"] for log in logs["views"])}  # fmt: skip
    if views != want_views:
        raise RuntimeError(f"views: Looked at lists hold {views}, expected {want_views}")


def say(text: str) -> None:
    print(text, flush=True)


def print_timed(t: Timed) -> None:
    """One timed run and where its time went."""
    say(f"{t.kind}, {t.worker}: {t.events:,} events in {t.seconds:.2f} s = "
        f"{t.events_per_s:,.0f} events/s (all produced and acknowledged after "
        f"{t.produce_seconds:.2f} s)")  # fmt: skip
    say(f"  cpu busy: {t.phase.busy()}; {t.batches} batches of {t.records_per_batch:.0f} "
        f"records, inside the batch handler {t.handler_busy:.0%} of the time")  # fmt: skip
    ignore = {"info", "config|resetstat", "get", "hexists", "evalsha", "eval", "ping"}
    engine = {k: v for k, v in t.phase.commands.items() if k not in ignore}
    top = sorted(engine.items(), key=lambda kv: -kv[1]["usec"])[:6]
    per = ", ".join(f"{name} {s['calls'] / t.events:.2f}" for name, s in top)
    say(f"  redis commands per event inside the engine's scripts (by total time): {per}")


def write_results(report: Report) -> None:
    """``bench/results/shop.json``: the summary, then the details."""
    write_report(RESULTS, report)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures, the last line machine-readable."""
    args = quick_args(__doc__, argv, "smaller sizes, under a minute")
    plan = QUICK if args.quick else FULL
    source = str(Path(sys.modules["feedamp"].__file__ or "").resolve().parent)
    report = Report(mode="quick" if args.quick else "full", plan=asdict(plan), source=source)
    say(f"feedamp shop benchmark ({report.mode}) of {source}; "
        f"REDIS_TUNING {' '.join(REDIS_TUNING)}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="feedamp-bench-shop-") as scratch:
        campaigns = Path(scratch) / "campaigns.json"
        gifts = plan.gifts * plan.runs
        doc = campaigns_doc(int(time.time() * 1000), gifts, int(gifts * SMALL_POOL_PER_GIFT))
        campaigns.write_bytes(orjson.dumps(doc))
        with running_stack(Path(scratch), campaigns=str(campaigns)) as stack:
            asyncio.run(run_measurements(stack, plan, report))
    if report.dead_letters:
        say(f"WARNING: the workers dead-lettered {report.dead_letters} records")
    write_results(report)
    say(" ".join(f"{k}={v}" for k, v in report.summary().items()))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == [WORKER_FLAG]:
        sys.exit(stub_worker_main())
    sys.exit(main())
