"""The ``feedamp`` command: worker, produce, feed, dev."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from feedamp.config import Settings

__all__ = ["main"]


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    import faust
    from feedamp.streams import create_app

    app = create_app(settings)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
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


def _feed(args: argparse.Namespace, settings: Settings) -> int:
    from feedamp.feeds import FeedReader

    from .show import format_page

    async def run() -> str:
        reader = FeedReader.from_url(
            settings.redis_url, key_prefix=settings.key_prefix, feed_buckets=settings.feed_buckets
        )
        try:
            page = await reader.following(args.user, limit=args.limit, cursor=args.cursor)
        finally:
            await reader.close()
        return format_page(args.user, page)

    print(asyncio.run(run()))
    return 0


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from .dev import run_dev

    return run_dev(settings, once=args.once)


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
    p = sub.add_parser("feed", help="print a user's Following feed")
    p.add_argument("user")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--cursor")
    p.set_defaults(fn=_feed)
    p = sub.add_parser("dev", help="run broker, Redis and worker on this machine with a demo")
    p.add_argument("--once", action="store_true", help="stop after printing the demo feeds")
    p.set_defaults(fn=_dev)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"feedamp: {exc}", file=sys.stderr)
        return 2
    return args.fn(args, settings)
