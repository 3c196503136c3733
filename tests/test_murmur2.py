"""``kafka/produce.py``'s murmur2 gives aiokafka's (the Java client's) value for any key."""

from __future__ import annotations

import random

from aiokafka.partitioner import murmur2 as reference
from feedamp.kafka.produce import murmur2


def test_murmur2_equals_aiokafkas_for_every_length_and_byte():
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(n)) for n in range(300) for _ in range(20)]
    keys += [b"", b"\xff" * 9, "gift-ø".encode(), b"1876543210987654321"]
    assert [murmur2(k) for k in keys] == [reference(k) for k in keys]
