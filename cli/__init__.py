"""The ``feedamp`` command: worker, produce, feed, gifts, orders, dev, replay, verify, dlq,
status."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from feedamp.config import Settings

__all__ = ["main"]


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust
    from feedamp.streams import create_app
    from feedamp.streams.logs import log_format, logging_config
    from feedamp.streams.topics import prepare_topics

    problem = prepare_topics(settings)  # before Faust subscribes: it must see them at once
    if problem:
        print(f"feedamp worker: {problem}", file=sys.stderr)
        return 2
    app = create_app(settings)
    json_logs = log_format() == "json"
    config = {"logging_config": logging_config("json", args.loglevel)} if json_logs else {}
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, **config)
    if json_logs or not sys.stdout.isatty():
        # The spinner writes terminal escapes between JSON lines, and its log handler
        # sets the root logger to DEBUG whatever --loglevel says (every aiokafka request
        # then builds a debug record): only on a terminal is it worth that.
        worker.spinner = None
    worker.execute_from_commandline()
    return 0


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from .produce import messages_from_lines, publish, read_lines

    try:
        messages = list(messages_from_lines(read_lines(args.file), settings))
    except (ValueError, OSError) as exc:
        print(f"feedamp produce: {exc}", file=sys.stderr)
        return 2
    sent = asyncio.run(publish(messages, settings))
    print(f"published {sent} events to {settings.kafka_bootstrap_servers}")
    return 0


def _read(settings: Settings, read: Callable[[Any], Awaitable[str]]) -> int:
    """Print what ``read(reader)`` renders, with a reader configured like the workers."""
    from feedamp.feeds import FeedReader

    async def run() -> str:
        reader = FeedReader.from_url(
            settings.redis_url, key_prefix=settings.key_prefix,
            feed_buckets=settings.feed_buckets, campaigns=settings.campaigns,
            for_you_half_life_ms=settings.for_you_half_life_ms,
        )  # fmt: skip
        try:
            return await read(reader)
        finally:
            await reader.close()

    print(asyncio.run(run()))
    return 0


def _feed(args: argparse.Namespace, settings: Settings) -> int:
    from .show import format_page

    async def read(reader: Any) -> str:
        page = await (reader.for_you if args.for_you else reader.following)(
            args.user, limit=args.limit, cursor=args.cursor
        )
        return format_page(args.user, page, "For You" if args.for_you else "Following")

    return _read(settings, read)


def _gifts(args: argparse.Namespace, settings: Settings) -> int:
    from .show import format_gifts

    async def read(reader: Any) -> str:
        inbox = format_gifts(args.user, await reader.gift_inbox(args.user, limit=args.limit))
        sent = await reader.gifts_sent(args.user, limit=args.limit)
        left = ", ".join(f"{c}: {n}" for c, n in sorted(sent.remaining.items())) or "-"
        return f"{inbox}\nSent {len(sent.items)} gift(s); sends left: {left}"

    return _read(settings, read)


def _orders(args: argparse.Namespace, settings: Settings) -> int:
    from .show import format_order_center, format_stats

    async def read(reader: Any) -> str:
        center = await reader.order_center(args.user, limit=args.limit)
        if args.cursor:
            orders = await reader.orders(args.user, limit=args.limit, cursor=args.cursor)
            center = replace(center, orders=orders)
        stats = await reader.creator_stats(args.user)
        return f"{format_order_center(args.user, center)}\n{format_stats(args.user, stats)}"

    return _read(settings, read)


def _rebuild_feed(args: argparse.Namespace, settings: Settings) -> int:
    from feedamp.feeds import FeedStore
    from feedamp.feeds.namespace import Namespaces
    from feedamp.streams import redis_client

    async def run() -> int:
        redis = redis_client(settings)
        try:
            prefix = await Namespaces(redis, settings.key_prefix).active()
            return await FeedStore(redis, settings).rebuild_feed(args.user, prefix=prefix)
        finally:
            await redis.aclose()

    followees = asyncio.run(run())
    print(f"rebuilt the feeds of {args.user} from {followees} followees' recent activity")
    return 0


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from .dev import run_dev

    return run_dev(settings, once=args.once, cluster=args.cluster)


def _ops(module: str) -> Callable[[argparse.Namespace, Settings], int]:
    """``run(args, settings)`` of ``cli/<module>.py``, imported when the command runs."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        return importlib.import_module(f"{__name__}.{module}").run(args, settings)

    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``feedamp`` console command."""
    parser = argparse.ArgumentParser(prog="feedamp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("worker", help="run the Faust stream worker")
    p.add_argument("--loglevel", default="info")
    p.set_defaults(fn=_worker)
    p = sub.add_parser("produce", help="publish events from a JSON-lines file ('-' for stdin)")
    p.add_argument("file")
    p.set_defaults(fn=_produce)
    p = sub.add_parser("feed", help="print a user's Following (or For You) feed")
    p.add_argument("user")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.add_argument("--for-you", action="store_true", help="the ranked For You feed")
    p.set_defaults(fn=_feed)
    p = sub.add_parser("gifts", help="print a user's gift inbox and sends left")
    p.add_argument("user")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(fn=_gifts)
    p = sub.add_parser("orders", help="print a user's order center (orders, looked at, "
                       "tagged, recommended) and credited sales")  # fmt: skip
    p.add_argument("user")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.set_defaults(fn=_orders)
    p = sub.add_parser("rebuild-feed", help="regenerate a user's feeds from followees' activity")
    p.add_argument("user")
    p.set_defaults(fn=_rebuild_feed)
    p = sub.add_parser("dev", help="run broker, Redis and worker on this machine with a demo")
    p.add_argument("--once", action="store_true", help="stop after printing the demo feeds")
    p.add_argument("--cluster", action="store_true",
                   help="use a three-master Redis Cluster instead of one Redis")  # fmt: skip
    p.set_defaults(fn=_dev)
    p = sub.add_parser("replay", help="re-apply the input topics to Redis from a time")
    p.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="'beginning', ISO-8601 (UTC if no zone) or ms since epoch "
        "(required, except with --rebuild: default beginning)",
    )
    p.add_argument(
        "--to",
        dest="end",
        metavar="TIME",
        help="last event time (default: the end offsets at start)",
    )
    p.add_argument("--topics", help="comma-separated, e.g. posts,reposts (default: all)")
    p.add_argument("--dry-run", action="store_true", help="parse and count, write nothing")
    p.add_argument(
        "--publish",
        action="store_true",
        help="publish dead letters and decisions again (the worker already did)",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="replay into a fresh namespace, switch readers and workers to it, drop the old",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --rebuild: wait this long after the switch before dropping the old "
        "namespace (longer than any reader's pointer cache; default 30)",
    )
    p.set_defaults(fn=_ops("replay"))
    p = sub.add_parser("verify", help="compare the live views with a fresh rebuild of the log")
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long at most for the workers to apply the log (default 30)",
    )
    p.add_argument("--limit", type=int, default=50, help="print at most this many differences")
    p.set_defaults(fn=_ops("verify"))
    p = sub.add_parser("dlq", help="list or re-send dead letters")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("--limit", type=int, help="list at most this many")
    p.set_defaults(fn=_ops("dlq"))
    p = sub.add_parser("status", help="consumer lag, dead letters, Redis memory and feeds")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(fn=_ops("status"))
    args = parser.parse_args(argv)
    from feedamp.config.campaigns import load_campaigns
    from feedamp.streams.kafka_config import kafka_client_kwargs
    from feedamp.streams.logs import configure_logging

    try:
        configure_logging()
        settings = Settings.from_env()
        kafka_client_kwargs(settings)  # a bad KAFKA_* security setting stops here
        load_campaigns(settings.campaigns)  # so does a bad campaigns file
    except ValueError as exc:
        print(f"feedamp: {exc}", file=sys.stderr)
        return 2
    from feedamp.feeds.cluster import ClusterUnsupported
    from feedamp.feeds.connection import RedisUnreachable

    try:
        return args.fn(args, settings)
    except ClusterUnsupported as exc:
        print(f"{exc}", file=sys.stderr)
        return 2
    except RedisUnreachable as exc:
        print(f"feedamp {args.command}: {exc} (REDIS_URL)", file=sys.stderr)
        return 2
