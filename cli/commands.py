"""The handlers of the ``feedamp`` subcommands: one ``name(args, settings) -> int`` each.

A handler turns parsed arguments into a call of the engine (:mod:`feedamp.ops`, the
stores and readers, the Faust app) and prints the result; it imports what it needs when
it runs, so ``feedamp --help`` and light commands load neither Faust nor the engines.
An operator's error is raised as :class:`~feedamp.config.OperatorError` (or printed with
exit 2); :func:`feedamp.cli.main` turns errors into one line. Exit codes: 0 done, 1 the
command found a problem (a difference, a failed rebuild) or lost a server mid-way, 2 bad
arguments or a setting, server or topic it cannot start with.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from feedamp.config import Settings

__all__ = [
    "decisions_tail",
    "dev",
    "dlq_list",
    "dlq_replay",
    "dlq_tail",
    "explain",
    "feed",
    "gifts",
    "orders",
    "produce",
    "rebuild_feed",
    "replay",
    "status",
    "verify",
    "worker",
]


def worker(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp worker``: run the Faust stream worker."""
    import faust
    from feedamp.config import OperatorError
    from feedamp.kafka.topics import prepare_topics
    from feedamp.streams import create_app
    from feedamp.streams.logs import log_format, logging_config

    problem = prepare_topics(settings)  # before Faust subscribes: it must see them at once
    if problem:
        raise OperatorError(problem)
    app = create_app(settings)
    json_logs = log_format() == "json"
    config: dict[str, Any] = (
        {"logging_config": logging_config("json", args.loglevel)} if json_logs else {}
    )
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, **config)
    if json_logs or not sys.stdout.isatty():
        # The spinner writes terminal escapes between JSON lines, and its log handler
        # sets the root logger to DEBUG whatever --loglevel says (every aiokafka request
        # then builds a debug record): only on a terminal is it worth that.
        worker.spinner = None
    worker.execute_from_commandline()
    return 0


def produce(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp produce FILE``: publish events from a JSON-lines file."""
    from .produce import messages_from_lines, publish, read_lines

    try:
        messages = list(messages_from_lines(read_lines(args.file), settings))
    except (ValueError, OSError) as exc:
        print(f"feedamp produce: {exc}", file=sys.stderr)
        return 2
    from feedamp.streams.preflight import check

    asyncio.run(check(settings, ("kafka",)))  # after the file: its errors come first
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
            for_you_half_life_ms=settings.for_you_half_life_ms, settings=settings,
        )  # fmt: skip
        try:
            return await read(reader)
        finally:
            await reader.close()

    print(asyncio.run(run()))
    return 0


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def feed(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp feed USER``: a Following (or For You) page (``--json``: as JSON)."""
    from .show import format_page

    async def read(reader: Any) -> str:
        page = await (reader.for_you if args.for_you else reader.following)(
            args.user, limit=args.limit, cursor=args.cursor
        )
        if args.json:
            return _json(page)
        return format_page(args.user, page, "For You" if args.for_you else "Following")

    return _read(settings, read)


def gifts(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp gifts USER``: the gift inbox and the sends left (``--json``: as JSON)."""
    from .show import format_gifts

    async def read(reader: Any) -> str:
        inbox = await reader.gift_inbox(args.user, limit=args.limit)
        sent = await reader.gifts_sent(args.user, limit=args.limit)
        if args.json:
            return _json({"inbox": inbox, "sent": sent})
        left = ", ".join(f"{c}: {n}" for c, n in sorted(sent.remaining.items())) or "-"
        text = format_gifts(args.user, inbox)
        return f"{text}\nSent {len(sent.items)} gift(s); sends left: {left}"

    return _read(settings, read)


def orders(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp orders USER``: the order center and the sales credited (``--json``: as
    JSON)."""
    from .show import format_order_center, format_stats

    async def read(reader: Any) -> str:
        center = await reader.order_center(args.user, limit=args.limit)
        if args.cursor:
            orders = await reader.orders(args.user, limit=args.limit, cursor=args.cursor)
            center = replace(center, orders=orders)
        stats = await reader.creator_stats(args.user)
        if args.json:
            return _json({"order_center": center, "credited": stats})
        return f"{format_order_center(args.user, center)}\n{format_stats(args.user, stats)}"

    return _read(settings, read)


def rebuild_feed(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp rebuild-feed USER``: regenerate one user's feeds."""
    from feedamp.feeds import FeedStore
    from feedamp.feeds.connection import connect
    from feedamp.feeds.namespace import Namespaces

    async def run() -> int:
        redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
        try:
            ns = await Namespaces(redis, settings.key_prefix).resolve(settings)
            return await FeedStore(redis, settings).rebuild_feed(args.user, namespace=ns)
        finally:
            await redis.aclose()

    followees = asyncio.run(run())
    print(f"rebuilt the feeds of {args.user} from {followees} followees' recent activity")
    return 0


def dev(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp dev``: the embedded stack with the demo."""
    from .dev import run_dev

    return run_dev(settings, once=args.once, demo=not args.no_demo, cluster=args.cluster)


def explain(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp explain USER POST``: why the post is or is not in the user's feeds
    (``--json``: one JSON object)."""
    from feedamp.feeds.connection import connect
    from feedamp.feeds.explain import Explanation
    from feedamp.feeds.explain import explain as run_explain

    async def run() -> Explanation:
        redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
        try:
            return await run_explain(redis, args.user, args.post,
                                     key_prefix=settings.key_prefix,
                                     feed_buckets=settings.feed_buckets,
                                     feed_cap=settings.feed_cap,
                                     for_you_cap=settings.for_you_cap)  # fmt: skip
        finally:
            await redis.aclose()

    x = asyncio.run(run())
    print(_json(x.to_json()) if args.json else x.text())
    return 0


def replay(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp replay``: check the arguments, replay (or rebuild), print the summary."""
    from feedamp.ops.replay import input_topics, parse_time
    from feedamp.ops.replay import replay as run_replay
    from feedamp.streams.logs import quiet_clients

    quiet_clients()
    try:
        if args.rebuild:
            for flag, given in (("--to", args.end), ("--dry-run", args.dry_run),
                                ("--publish", args.publish)):  # fmt: skip
                if given:
                    raise ValueError(f"--rebuild replays up to now and publishes nothing: "
                                     f"drop {flag}")  # fmt: skip
            if args.grace < 0:
                raise ValueError("--grace must be >= 0")
        elif not args.start:
            raise ValueError("--from is required (or --rebuild)")
        start_ms = parse_time(args.start or "beginning")
        end_ms = parse_time(args.end) if args.end else None
        if args.end and end_ms is None:
            raise ValueError("--to needs a time, not 'beginning'")
        names = [t.strip() for t in (args.topics or "").split(",") if t.strip()]
        topics = input_topics(settings, names)
    except ValueError as exc:
        print(f"feedamp replay: {exc}", file=sys.stderr)
        return 2
    if args.rebuild:
        return _rebuild(settings, start_ms=start_ms, topics=topics, grace=args.grace)
    stats = asyncio.run(
        run_replay(
            settings,
            start_ms=start_ms,
            end_ms=end_ms,
            topics=topics,
            dry_run=args.dry_run,
            publish=args.publish,
            progress=True,
        )
    )
    print(stats.summary(dry_run=args.dry_run, publish=args.publish))
    return 0


def _rebuild(settings: Settings, *, start_ms: int | None, topics: list[str], grace: float) -> int:
    """``feedamp replay --rebuild``: rebuild, switch, drop; print each step and a summary."""
    from feedamp.feeds.namespace import MAX_POINTER_TTL, counter_key
    from feedamp.ops.rebuild import rebuild

    try:
        counter_key(settings.key_prefix)
    except ValueError as exc:
        print(f"feedamp replay: {exc}", file=sys.stderr)
        return 2
    if grace < MAX_POINTER_TTL:
        print(f"feedamp replay: warning: --grace {grace:g}s is shorter than the longest reader "
              f"pointer cache ({MAX_POINTER_TTL:g}s)", file=sys.stderr)  # fmt: skip

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        result = asyncio.run(rebuild(settings, start_ms=start_ms, topics=topics, grace=grace,
                                     progress=True, say=say))  # fmt: skip
    except RuntimeError as exc:
        print(f"feedamp replay: {exc}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


def verify(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp verify``: exit 1 if any key differs, else 0."""
    from feedamp.feeds.namespace import scratch_prefix
    from feedamp.ops.verify import format_verification
    from feedamp.ops.verify import verify as run_verify
    from feedamp.streams.logs import quiet_clients

    quiet_clients()
    try:
        scratch_prefix(settings.key_prefix)
    except ValueError as exc:
        print(f"feedamp verify: {exc}", file=sys.stderr)
        return 2
    result = asyncio.run(run_verify(settings, wait=args.wait, progress=True))
    print(format_verification(result, args.limit))
    return 1 if result.differences else 0


def dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp dlq list``: one line per dead letter (``--json``: one JSON object each)."""
    from feedamp.ops.dlq import list_letters
    from feedamp.streams.logs import quiet_clients

    quiet_clients()
    letters = asyncio.run(list_letters(settings, args.limit))
    for letter in letters:
        print(_json(letter.to_json()) if args.json else letter.line())
    print(f"{len(letters)} dead letter(s) in {settings.topics.dead_letter!r}", file=sys.stderr)
    return 0


def dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp dlq replay``: re-send the letters that pass the checks now, count the
    kept ones by reason (``--dry-run``: send nothing)."""
    from feedamp.ops.dlq import replay_letters
    from feedamp.streams.logs import quiet_clients

    quiet_clients()
    stats = asyncio.run(replay_letters(settings, dry_run=args.dry_run,
                                       from_beginning=args.start == "beginning"))  # fmt: skip
    by_topic = ", ".join(f"{t} {n}" for t, n in sorted(stats.sent.items()))
    verb = "would re-send" if args.dry_run else "re-sent"
    print(f"{verb} {stats.total} dead letter(s)" + (f": {by_topic}" if by_topic else ""))
    print(f"kept {stats.skipped} that would fail again" + (":" if stats.kept else ""))
    for reason, n in stats.kept.most_common():
        print(f"  {n}  {reason}")
    return 0


def _tail(args: argparse.Namespace, settings: Settings, topic: str,
          line: Callable[[Any], str]) -> int:  # fmt: skip
    """Print each record of ``topic`` that ``args`` selects, one line, flushed."""
    import signal

    from feedamp.ops.tail import tail
    from feedamp.streams.logs import quiet_clients

    quiet_clients()
    # Ctrl-C and SIGTERM stop it, even when started from a shell that ignores SIGINT for
    # background jobs (Python then installs no KeyboardInterrupt handler).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)

    def started() -> None:
        where = "the beginning" if args.start == "beginning" else "new records"
        print(f"following {topic!r} from {where}; Ctrl-C stops", file=sys.stderr, flush=True)

    async def run() -> None:
        async for record in tail(settings, topic, user=args.user, post=args.post,
                                 from_beginning=args.start == "beginning", limit=args.limit,
                                 idle=args.idle, started=started):  # fmt: skip
            print(line(record), flush=True)

    asyncio.run(run())
    return 0


def decisions_tail(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp decisions tail``: each decision's JSON, one a line."""

    def line(record: Any) -> str:
        return (record.value or b"").decode(errors="replace")

    return _tail(args, settings, settings.topics.decisions, line)


def dlq_tail(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp dlq tail``: each dead letter as ``dlq list`` prints it (``--json``: as
    JSON)."""
    from feedamp.kafka.letters import Letter

    def line(record: Any) -> str:
        letter = Letter.from_record(record)
        return _json(letter.to_json()) if args.json else letter.line()

    return _tail(args, settings, settings.topics.dead_letter, line)


def status(args: argparse.Namespace, settings: Settings) -> int:
    """``feedamp status`` (``--json`` for one JSON object)."""
    from feedamp.feeds.connection import connect
    from feedamp.ops.status import Status, collect_status, format_status
    from feedamp.streams.logs import quiet_clients

    quiet_clients()

    async def gather() -> Status:
        redis = connect(settings.redis_url, max_connections=settings.redis_max_connections)
        try:
            return await collect_status(settings, redis)
        finally:
            await redis.aclose()

    result = asyncio.run(gather())
    print(json.dumps(result.to_json()) if args.json else format_status(result))
    return 0
