"""Starting aiokafka clients: a client whose ``start()`` fails is stopped before the error
goes on, so no "Unclosed AIOKafka..." warning follows the one-line error."""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["start_client"]


async def start_client(client: Any) -> None:
    """``await client.start()`` for an aiokafka client; a client whose start failed is
    stopped before the error goes on."""
    try:
        await client.start()
    except BaseException:
        with contextlib.suppress(Exception):
            await client.stop()
        raise
