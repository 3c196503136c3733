"""The suspension rule (one Python copy, the door's and the reader's; lib.lua has the
other): suspended at an event time when the latest suspension is at or before it and no
reinstatement at or after that suspension is at or before it."""

from __future__ import annotations

import math

import pytest
from feedamp.feeds.accounts import suspended_at


@pytest.mark.parametrize(
    ("state", "ts", "suspended"),
    [
        ((None, None), 100, False),
        ((b"100", None), 99, False),
        ((b"100", None), 100, True),
        ((b"100", b"150"), 120, True),
        ((b"100", b"150"), 150, False),
        ((b"200", b"150"), 250, True),  # reinstated before the latest suspension
        ((b"100", b"150"), math.inf, False),  # from now on: reinstated
        ((b"200", b"150"), math.inf, True),
    ],
)
def test_suspended_at(state, ts, suspended):
    assert suspended_at(state, ts) is suspended
