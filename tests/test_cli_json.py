"""``--json`` on the read commands, through ``main`` in this process."""

from __future__ import annotations

import os

import orjson
import pytest
import redis as sync_redis
from feedamp.cli import main
from feedamp.feeds.keys import Keys, bucket_of


@pytest.fixture
def cli(settings, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("FEEDAMP_"):
            monkeypatch.delenv(name)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> object:
        assert main(list(argv)) == 0
        return orjson.loads(capsys.readouterr().out)

    return run


def test_feed_gifts_orders_as_json(cli, settings, uid):
    keys = Keys(settings.key_prefix)
    u, p = uid("u"), uid("p")
    client = sync_redis.Redis.from_url(settings.redis_url)
    try:
        client.zadd(keys.feed(u, bucket_of(p, settings.feed_buckets)), {p: 1_700_000_000_000})
        client.hset(keys.post(p), mapping={"a": "al", "ts": 1_700_000_000_000, "text": "hi"})
    finally:
        client.close()
    feed = cli("feed", u, "--json")
    assert feed == {"items": [{"post_id": p, "author_id": "al", "ts": 1_700_000_000_000,
                               "reposted_by": [], "comment": None, "labels": [], "text": "hi",
                               "media_url": None}], "next_cursor": None}  # fmt: skip
    gifts = cli("gifts", u, "--json")
    assert gifts["inbox"] == {"items": [], "next_cursor": None} and gifts["sent"]["items"] == []
    orders = cli("orders", u, "--json")
    assert orders["order_center"]["orders"]["items"] == [] and orders["credited"]["orders"] == 0


def test_every_argument_has_help_text():
    import argparse

    from feedamp.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {action.dest}")

    walk(build_parser(), "feedamp")
    assert missing == []
