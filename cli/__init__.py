"""The ``feedamp`` command: worker, produce, feed, gifts, orders, dev, replay, verify, dlq,
status."""

from __future__ import annotations

import argparse
import sys

from feedamp.config import Settings

from . import commands

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``feedamp`` console command."""
    parser = argparse.ArgumentParser(prog="feedamp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("worker", help="run the Faust stream worker")
    p.add_argument("--loglevel", default="info")
    p.set_defaults(fn=commands.worker)
    p = sub.add_parser("produce", help="publish events from a JSON-lines file ('-' for stdin)")
    p.add_argument("file")
    p.set_defaults(fn=commands.produce)
    p = sub.add_parser("feed", help="print a user's Following (or For You) feed")
    p.add_argument("user")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.add_argument("--for-you", action="store_true", help="the ranked For You feed")
    p.set_defaults(fn=commands.feed)
    p = sub.add_parser("gifts", help="print a user's gift inbox and sends left")
    p.add_argument("user")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(fn=commands.gifts)
    p = sub.add_parser("orders", help="print a user's order center (orders, looked at, "
                       "tagged, recommended) and credited sales")  # fmt: skip
    p.add_argument("user")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.set_defaults(fn=commands.orders)
    p = sub.add_parser("rebuild-feed", help="regenerate a user's feeds from followees' activity")
    p.add_argument("user")
    p.set_defaults(fn=commands.rebuild_feed)
    p = sub.add_parser("dev", help="run broker, Redis and worker on this machine with a demo")
    p.add_argument("--once", action="store_true", help="stop after printing the demo feeds")
    p.add_argument("--cluster", action="store_true",
                   help="use a three-master Redis Cluster instead of one Redis")  # fmt: skip
    p.set_defaults(fn=commands.dev)
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
    p.set_defaults(fn=commands.replay)
    p = sub.add_parser("verify", help="compare the live views with a fresh rebuild of the log")
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long at most for the workers to apply the log (default 30)",
    )
    p.add_argument("--limit", type=int, default=50, help="print at most this many differences")
    p.set_defaults(fn=commands.verify)
    p = sub.add_parser("dlq", help="list or re-send dead letters")
    p.add_argument("action", choices=["list", "replay"])
    p.add_argument("--limit", type=int, help="list at most this many")
    p.set_defaults(fn=commands.dlq)
    p = sub.add_parser("status", help="consumer lag, dead letters, Redis memory and feeds")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(fn=commands.status)
    args = parser.parse_args(argv)
    from feedamp.feeds.shop.campaigns import load_campaigns
    from feedamp.kafka.config import kafka_client_kwargs
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
