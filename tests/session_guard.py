"""A test double of one broker check: stock Apache Kafka's ``group.min.session.timeout.ms``.

:class:`SessionGuard` is a TCP proxy in front of a real broker (the embedded one, which
does not make this check). It forwards every request and every answer byte for byte,
except a JoinGroup request (api key 11) asking a session timeout below the minimum: that
one it answers itself, as Apache Kafka's group coordinator does, with error
``INVALID_SESSION_TIMEOUT`` (26), generation -1 and no members, in the request's own
version, and it never reaches the broker. The broker must advertise the proxy's address,
so that every connection a client makes (the group coordinator's too) comes through it.

It speaks only what this check needs: the request header (size, api key, api version,
correlation id, client id) and the start of a JoinGroup body (group id, session timeout,
rebalance timeout from version 1, member id) for the versions before flexible encoding,
0 to 5 (aiokafka sends 0, 1, 2 or 5). A JoinGroup of a later version is forwarded as is.
Answers keep the order of their requests on each connection, as a broker's do (every
request is taken to have an answer: a Produce with ``acks=0`` would not, and the worker
produces with ``acks=all``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import deque

from feedamp.embedded.services import free_port

#: Apache Kafka's default ``group.min.session.timeout.ms``.
MIN_SESSION_TIMEOUT_MS = 6000
JOIN_GROUP = 11
INVALID_SESSION_TIMEOUT = 26
#: JoinGroup versions before flexible encoding (KIP-482): plain int16-length strings.
RIGID_VERSIONS = range(6)


def _string(buf: bytes, at: int) -> tuple[str | None, int]:
    """A nullable int16-length string at ``at``, and the offset after it."""
    (n,) = struct.unpack_from(">h", buf, at)
    if n < 0:
        return None, at + 2
    return buf[at + 2 : at + 2 + n].decode(), at + 2 + n


def _put(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def refusal(request: bytes, minimum_ms: int = MIN_SESSION_TIMEOUT_MS) -> bytes | None:
    """The whole answer (size prefix included) stock Kafka gives ``request`` (one request
    without its size prefix) if it is a JoinGroup of version 0 to 5 whose session timeout
    is below ``minimum_ms``; else None (forward it)."""
    api_key, version, correlation = struct.unpack_from(">hhi", request, 0)
    if api_key != JOIN_GROUP or version not in RIGID_VERSIONS:
        return None
    _client, at = _string(request, 8)
    _group, at = _string(request, at)
    (session_ms,) = struct.unpack_from(">i", request, at)
    at += 4
    if session_ms >= minimum_ms:
        return None
    if version >= 1:
        at += 4  # rebalance timeout
    member, _ = _string(request, at)
    body = struct.pack(">i", correlation)  # response header v0
    if version >= 2:
        body += struct.pack(">i", 0)  # throttle time
    body += struct.pack(">hi", INVALID_SESSION_TIMEOUT, -1)  # error, generation
    body += _put("") + _put("") + _put(member or "")  # protocol, leader, member id
    body += struct.pack(">i", 0)  # no members
    return struct.pack(">i", len(body)) + body


class SessionGuard:
    """Listens on ``port`` (a free one by default) and proxies to ``target_port``,
    refusing JoinGroups whose session timeout is below ``minimum_ms``; counts them in
    :attr:`refused`."""

    def __init__(self, target_port: int, minimum_ms: int = MIN_SESSION_TIMEOUT_MS) -> None:
        self.target_port = target_port
        self.minimum_ms = minimum_ms
        self.port = free_port()
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            self._tasks.discard(task)
            return
        # One entry per request in flight, in order: None for an answer the broker owes,
        # bytes for an answer of ours, sent once every answer before it has gone out.
        owed: deque[bytes | None] = deque()
        pumps = [asyncio.create_task(self._requests(client_r, broker_w, client_w, owed)),
                 asyncio.create_task(self._answers(broker_r, client_w, owed))]  # fmt: skip
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            client_w.transport.abort()
            broker_w.transport.abort()
            self._tasks.discard(task)

    async def _requests(
        self,
        client_r: asyncio.StreamReader,
        broker_w: asyncio.StreamWriter,
        client_w: asyncio.StreamWriter,
        owed: deque[bytes | None],
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while True:
                (size,) = struct.unpack(">i", await client_r.readexactly(4))
                request = await client_r.readexactly(size)
                answer = refusal(request, self.minimum_ms)
                if answer is None:
                    owed.append(None)
                    broker_w.write(struct.pack(">i", size) + request)
                    await broker_w.drain()
                    continue
                self.refused += 1
                owed.append(answer)
                _flush(owed, client_w)
                await client_w.drain()

    async def _answers(
        self,
        broker_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        owed: deque[bytes | None],
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while True:
                head = await broker_r.readexactly(4)
                (size,) = struct.unpack(">i", head)
                answer = head + await broker_r.readexactly(size)
                owed.popleft()  # the broker answers in order: this was the oldest it owed
                client_w.write(answer)
                _flush(owed, client_w)
                await client_w.drain()


def _flush(owed: deque[bytes | None], client_w: asyncio.StreamWriter) -> None:
    """Send our own answers that are next in line."""
    while owed and owed[0] is not None:
        client_w.write(owed.popleft())  # type: ignore[arg-type]
