"""The ``feedamp`` command: parses the arguments, checks the settings and the addresses it
needs, and calls the subcommand's handler (:mod:`feedamp.cli.commands`); one line for an
operator's error (``--debug`` for the traceback), the traceback for a bug.

Exit codes: 0 done; 2 bad usage, a bad setting, or a Redis, broker or topic the command
cannot start with; 1 failed while running (a server lost mid-way, differences found by
``verify``); 130 interrupted; 141 output pipe closed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from feedamp.config import Settings

from . import commands

__all__ = ["build_parser", "main"]

log = logging.getLogger("feedamp")

DESCRIPTION = """\
feedamp: an event-driven feed amplification engine (Kafka events in, Redis views out).

Settings come from the environment: KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and FEEDAMP_*
(see the README's Configuration). `feedamp dev` starts a broker, Redis and a worker on
this machine and prints the lines to export."""

EPILOG = """\
examples:
  feedamp dev                       broker, Redis, worker and a demo on this machine
  feedamp produce events.jsonl      publish events
  feedamp feed alice --json         a user's Following feed as JSON
  feedamp explain alice p1          why p1 is (or is not) in alice's feeds
  feedamp status | head             consumer lag, dead letters, Redis
  feedamp decisions tail --user bob follow decisions live

Run `feedamp COMMAND --help` for a command's arguments."""

LOGLEVELS = ("debug", "info", "warning", "error", "critical")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("feedamp")
    except PackageNotFoundError:
        return "unknown"


def _int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (``high`` None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def _cursor(text: str) -> str:
    """An argparse type: a page cursor, ``<score>:<id>`` as printed by the previous page."""
    score, sep, member = text.partition(":")
    try:
        float(score)
    except ValueError:
        sep = ""
    if not sep or not member:
        raise argparse.ArgumentTypeError(
            f"not a cursor: {text!r} (use the value printed after 'next page: --cursor')"
        )
    return text


def _loglevel(text: str) -> str:
    value = text.strip().lower()
    if value not in LOGLEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(LOGLEVELS)})"
        )
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# --- the parser -------------------------------------------------------------------------


def _command(
    sub: Any, name: str, help: str, fn: Callable[..., int], needs: tuple[str, ...], **kw: Any
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", **kw)
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    p.set_defaults(fn=fn, needs=needs)
    return p


def _limit(p: argparse.ArgumentParser, default: int, high: int | None = 1000) -> None:
    bounds = f"1..{high}" if high else ">= 1"
    p.add_argument(
        "--limit",
        type=_int_range(1, high),
        default=default,
        metavar="N",
        help=f"at most N items ({bounds}; default {default})",
    )


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _tail_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", metavar="ID", help="only records naming this user")
    p.add_argument("--post", metavar="ID", help="only records naming this post")
    p.add_argument(
        "--from",
        dest="start",
        choices=("beginning", "end"),
        default="end",
        help="start at the beginning of the topic or at its end (default: end, new records only)",
    )
    p.add_argument(
        "--limit",
        type=_int_range(1),
        metavar="N",
        help="stop after N records (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--idle",
        type=_seconds,
        metavar="SECONDS",
        help="stop after SECONDS without a new matching record",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``feedamp`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="feedamp",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"feedamp {_version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "worker", "run a stream worker", commands.worker, ("kafka", "redis"))
    p.add_argument(
        "--loglevel",
        type=_loglevel,
        default="info",
        metavar="LEVEL",
        help=f"one of {', '.join(LOGLEVELS)} (default info)",
    )

    p = _command(sub, "produce", "publish events from a JSON-lines file", commands.produce, ())
    p.add_argument("file", metavar="FILE", help="JSON lines, one event each ('-': stdin)")

    p = _command(
        sub, "feed", "print a user's Following (or For You) feed", commands.feed, ("redis",)
    )
    p.add_argument("user", metavar="USER", help="user id")
    _limit(p, 20)
    p.add_argument(
        "--cursor",
        type=_cursor,
        metavar="C",
        help="the next page's cursor, printed at the end of a page",
    )
    p.add_argument("--for-you", action="store_true", help="the ranked For You feed")
    _json_flag(p)

    p = _command(
        sub, "gifts", "print a user's gift inbox and sends left", commands.gifts, ("redis",)
    )
    p.add_argument("user", metavar="USER", help="user id")
    _limit(p, 20)
    _json_flag(p)

    p = _command(
        sub,
        "orders",
        "print a user's order center (orders, looked at, tagged, recommended) and credited sales",
        commands.orders,
        ("redis",),
    )
    p.add_argument("user", metavar="USER", help="user id")
    _limit(p, 20)
    p.add_argument(
        "--cursor",
        type=_cursor,
        metavar="C",
        help="the next page's cursor (the last order's '<ts>:<order_id>')",
    )
    _json_flag(p)

    p = _command(
        sub,
        "explain",
        "explain why a post is or is not in a user's feeds",
        commands.explain,
        ("redis",),
    )
    p.add_argument("user", metavar="USER", help="the reader's user id")
    p.add_argument("post", metavar="POST", help="the post id")
    _json_flag(p)

    p = _command(
        sub,
        "rebuild-feed",
        "regenerate a user's feeds from followees' activity",
        commands.rebuild_feed,
        ("redis",),
    )
    p.add_argument("user", metavar="USER", help="user id")

    p = _command(sub, "dev", "run a broker, Redis and a worker on this machine", commands.dev, ())
    p.add_argument("--once", action="store_true", help="stop after printing the demo")
    p.add_argument(
        "--no-demo", action="store_true", help="start everything without playing the demo story"
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="use a three-master Redis Cluster instead of one Redis",
    )

    p = _command(
        sub,
        "replay",
        "re-apply the input topics to Redis from a time",
        commands.replay,
        ("kafka", "redis"),
    )
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
    p.add_argument(
        "--topics", metavar="LIST", help="comma-separated, e.g. posts,reposts (default: all)"
    )
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
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="with --rebuild: wait this long after the switch before dropping the "
        "old namespace (longer than any reader's pointer cache; default 30)",
    )

    p = _command(
        sub,
        "verify",
        "compare the live views with a fresh rebuild of the log",
        commands.verify,
        ("kafka", "redis"),
    )
    p.add_argument(
        "--wait",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="wait this long at most for the workers to apply the log (default 30)",
    )
    _limit(p, 50, None)
    p.set_defaults(limit=50)

    dlq = sub.add_parser(
        "dlq", help="list, re-send or follow dead letters", description="The dead-letter topic."
    )
    dsub = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = _command(dsub, "list", "list dead letters", commands.dlq_list, ("kafka",))
    p.add_argument("--limit", type=_int_range(1), metavar="N", help="list at most N")
    _json_flag(p)
    p = _command(
        dsub,
        "replay",
        "re-send the dead letters that now pass validation",
        commands.dlq_replay,
        ("kafka",),
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be sent and kept, send nothing"
    )
    p.add_argument(
        "--from",
        dest="start",
        choices=("new", "beginning"),
        default="new",
        help="new: letters not looked at by an earlier run (default); "
        "beginning: every letter again",
    )
    p = _command(dsub, "tail", "follow the dead-letter topic live", commands.dlq_tail, ("kafka",))
    _tail_args(p)
    _json_flag(p)

    decisions = sub.add_parser(
        "decisions", help="follow the decisions topic", description="The decisions topic."
    )
    dsub = decisions.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = _command(
        dsub, "tail", "follow the decisions topic live", commands.decisions_tail, ("kafka",)
    )
    _tail_args(p)

    p = _command(
        sub,
        "status",
        "consumer lag, dead letters, Redis memory and feeds",
        commands.status,
        ("kafka", "redis"),
    )
    _json_flag(p)
    return parser


# --- running ----------------------------------------------------------------------------


def _report(
    command: str | None, line: str, exc: BaseException | None, debug: bool, fmt: str
) -> None:
    """One line on stderr (a JSON log line with the traceback in ``exception`` under
    ``FEEDAMP_LOG_FORMAT=json``; the traceback after it with ``--debug``)."""
    if command is not None:
        line = f"feedamp {command}: {line}"
    if fmt == "json":
        log.error("%s", line, exc_info=exc)
        return
    print(line, file=sys.stderr)
    if debug and exc is not None:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``| head``): stop without a word, like ``cat``."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``feedamp`` console command."""
    from feedamp.config import unknown_variables
    from feedamp.feeds.cluster import ClusterUnsupported
    from feedamp.feeds.connection import RedisUnreachable
    from feedamp.feeds.shop.campaigns import load_campaigns
    from feedamp.kafka.config import kafka_client_kwargs
    from feedamp.streams.logs import configure_logging
    from feedamp.streams.preflight import OperatorError, check, describe

    args = build_parser().parse_args(argv)
    command = " ".join(x for x in (args.command, getattr(args, "action", None)) if x)
    debug = getattr(args, "debug", False)
    fmt = "text"
    settings: Settings | None = None
    try:
        fmt = configure_logging()
        settings = Settings.from_env()
        kafka_client_kwargs(settings)  # a bad KAFKA_* security setting stops here
        load_campaigns(settings.campaigns)  # so does a bad campaigns file
    except ValueError as exc:
        _report(command, str(exc), exc, debug, fmt)
        return 2
    for name, close in unknown_variables():
        hint = f" (did you mean {close}?)" if close else ""
        log.warning("%s is not a feedamp setting%s; ignored", name, hint)
    try:
        if args.needs:
            asyncio.run(check(settings, args.needs))
        return args.fn(args, settings)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except OperatorError as exc:  # before the work: a setting, an address, a topic
        _report(command, str(exc), exc, debug, fmt)
        return 2
    except ClusterUnsupported as exc:  # its message names the command already
        _report(None, str(exc), exc, debug, fmt)
        return 2
    except RedisUnreachable as exc:
        _report(command, f"{exc} (REDIS_URL)", exc, debug, fmt)
        return 2
    except Exception as exc:
        line = describe(exc, settings)
        if line is None:
            raise
        _report(command, line, exc, debug, fmt)
        return 1
