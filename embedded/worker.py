"""A ``feedamp worker`` as a child process, configured by a :class:`Settings`.

Used by ``feedamp dev``, the test fixtures and the benchmarks. The child gets the settings
through its environment (:meth:`Settings.to_env`), as a deployed worker would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from feedamp.config import Settings

__all__ = ["start_worker", "stop_process", "worker_env"]


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a ``feedamp worker`` child use ``settings``."""
    return {**os.environ, **settings.to_env()}


def start_worker(settings: Settings, log_path: str | None = None) -> subprocess.Popen:
    """Start ``feedamp worker`` as a child process configured by ``settings``."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "feedamp.cli", "worker", "--loglevel", "warning"],
        env=worker_env(settings), stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
