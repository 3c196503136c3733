"""Bulk publishing: a burst of gifts and bad records, applied in large batches, gives
every decision and every dead letter exactly once, in order within a key, with the keys,
bytes and headers the topics promise."""

from __future__ import annotations

import orjson

from .factory import Events, to_json
from .kafka import read_topic, send

GIFTS = 300
BAD = 300


async def test_a_burst_publishes_every_decision_and_dead_letter_once(worker, uid):
    s = worker.settings
    ev = Events()
    sender = uid("sender")
    gifts = [ev.gift(uid(f"g{n}"), sender, uid(f"to{n % 7}"), "no-such-offer")
             for n in range(GIFTS)]  # fmt: skip
    bad = [(s.topics.gifts, f"k{n}".encode(), b"not json " + str(n).encode())
           for n in range(BAD)]  # fmt: skip
    messages = [(s.topics.gifts, g.sender_id.encode(), to_json(g)) for g in gifts]
    mixed = [m for pair in zip(messages, bad, strict=True) for m in pair]
    await send(s, mixed)

    decided = await read_topic(s, s.topics.decisions, GIFTS, timeout=90)
    values = [orjson.loads(r.value) for r in decided]
    assert sorted(v["gift_id"] for v in values) == sorted(g.gift_id for g in gifts)
    assert {(v["decision"], tuple(v["reasons"])) for v in values} == {
        ("refused", ("unknown_offer",))
    }
    assert all(r.key == orjson.loads(r.value)["gift_id"].encode() for r in decided)
    # One sender: one input partition, so each decisions partition holds its gifts'
    # decisions in the order the gifts went in.
    position = {g.gift_id: n for n, g in enumerate(gifts)}
    for partition in {r.partition for r in decided}:
        order = [position[v["gift_id"]] for r, v in zip(decided, values, strict=True)
                 if r.partition == partition]  # fmt: skip
        assert order == sorted(order)

    letters = await read_topic(s, s.topics.dead_letter, BAD, timeout=90)
    assert sorted((r.key, r.value) for r in letters) == sorted((k, v) for _, k, v in bad)
    for r in letters:
        headers = dict(r.headers)
        assert headers["feedamp-topic"] == s.topics.gifts.encode()
        assert headers["feedamp-reason"].startswith(b"malformed JSON")
