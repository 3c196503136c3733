"""The worker's web port listens on ``FEEDAMP_WEB_HOST`` only (127.0.0.1 by default), and
serves feedamp's routes, none of Faust's built-in pages.

Reachability is checked through a non-loopback IPv4 address of this machine (from
``ip -4 addr``, else ``hostname -I``); where the machine has none, the listening socket's
address is checked alone (it is checked in every case).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
from feedamp.embedded.services import Service, free_port

from .conftest import WorkerHandle, make_settings, wait_until
from .test_web import get

BUILT_IN_PAGES = ("/", "/router/", "/table/", "/graph/", "/stats/", "/assignment/",
                  "/performance/")  # fmt: skip


def non_loopback_ipv4() -> list[str]:
    """This machine's IPv4 addresses outside 127.0.0.0/8."""
    found: list[str] = []
    if shutil.which("ip"):
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                             text=True, check=False).stdout  # fmt: skip
        found = [line.split()[3].split("/")[0] for line in out.splitlines() if " inet " in line]
    elif shutil.which("hostname"):
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True,
                             check=False).stdout  # fmt: skip
        found = [a for a in out.split() if a.count(".") == 3]
    return [a for a in found if not a.startswith("127.")]


def listening(port: int) -> list[str]:
    """Local addresses of the IPv4 and IPv6 sockets listening on ``port``."""
    addresses = []
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError), open(path) as table:
            for row in list(table)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    # /proc prints each 32-bit word in host (little-endian) order
                    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                    addresses.append(socket.inet_ntop(family, raw))
    return addresses


def refused(host: str, port: int) -> bool:
    """True when nothing accepts connections on ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


async def answering(worker: WorkerHandle, host: str) -> None:
    """Wait until the worker's web port answers HTTP on ``host``."""

    async def up() -> bool:
        status = (await get(f"http://{host}:{worker.settings.web_port}/healthz"))[0]
        return status in (200, 503)

    await wait_until(up, timeout=60, what=f"the web port to answer on {host}")


def web_worker(broker: Service, redis_server: Service, tmp_path, host: str | None):
    """A worker with its web port open on ``host`` (None: the default); it creates its
    topics itself."""
    changes = {"web_port": free_port()} | ({"web_host": host} if host else {})
    settings = make_settings(broker, redis_server, **changes)
    return WorkerHandle(settings, tmp_path / "worker.log")


@pytest.fixture(scope="module")
def default_worker(broker, redis_server, tmp_path_factory) -> Iterator[WorkerHandle]:
    """A worker with the default ``FEEDAMP_WEB_HOST``."""
    handle = web_worker(broker, redis_server, tmp_path_factory.mktemp("web_bind"), None)
    yield handle
    handle.stop()


async def test_the_default_listens_on_loopback_only(default_worker):
    port = default_worker.settings.web_port
    assert default_worker.settings.web_host == "127.0.0.1"
    await answering(default_worker, "127.0.0.1")
    assert listening(port) == ["127.0.0.1"]
    for address in non_loopback_ipv4():
        assert refused(address, port), f"the web port answers on {address}"


async def test_faust_built_in_pages_are_not_served(default_worker):
    await answering(default_worker, "127.0.0.1")
    base = f"http://127.0.0.1:{default_worker.settings.web_port}"
    statuses = {path: (await get(base + path))[0] for path in BUILT_IN_PAGES}
    assert statuses == dict.fromkeys(BUILT_IN_PAGES, 404)
    assert (await get(base + "/metrics"))[0] == 200
    assert (await get(base + "/healthz"))[0] in (200, 503)


async def test_web_host_is_the_bind_address(broker, redis_server, tmp_path):
    """Bound to a non-loopback address: reachable there, and not on 127.0.0.1. A machine
    without one binds 127.0.0.2 instead (then only the socket's address tells them
    apart from the default)."""
    host = (non_loopback_ipv4() or ["127.0.0.2"])[0]
    worker = web_worker(broker, redis_server, tmp_path, host)
    try:
        await answering(worker, host)
        port = worker.settings.web_port
        assert listening(port) == [host]
        assert refused("127.0.0.1", port)
    finally:
        worker.stop()
