"""Progress of a long command (replay, rebuild, verify): records applied, rate and ETA.

On a terminal a bar drawn by ``tqdm``; anywhere else (a file, a pipe, a log collector)
one log line every ``interval`` seconds and one at the end, without carriage returns. The
count is what was applied, never what was merely read ahead.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from typing import Any, TextIO

__all__ = ["ProgressBar"]

log = logging.getLogger("feedamp.progress")


def _width(stream: TextIO) -> dict[str, Any]:
    """tqdm's size: follow the terminal, or 100 columns and 24 rows where it reports none
    (a pty nobody sized, where tqdm would draw nothing)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        columns = 0
    return {"dynamic_ncols": True} if columns > 0 else {"ncols": 100, "nrows": 24}


class ProgressBar:
    """Progress of ``total`` records; :meth:`update` with the number applied so far."""

    def __init__(
        self, total: int, stream: TextIO | None = None, *, name: str = "replay",
        interval: float = 5.0,
    ) -> None:  # fmt: skip
        self.total = total
        self.name = name
        self.stream = stream or sys.stderr
        self.interval = interval
        self.started = time.monotonic()
        self._last = self.started
        self._done = 0
        self._bar = None
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, file=self.stream, unit="rec", unit_scale=total >= 10_000,
                desc=f"{name} (applied)", smoothing=0.1, **_width(self.stream),
            )  # fmt: skip

    def line(self, done: int, now: float | None = None) -> str:
        """``replay: 1,200/5,000 records applied (24%), 950 records/s, ETA 4s``."""
        elapsed = max((now or time.monotonic()) - self.started, 1e-9)
        rate = done / elapsed
        pct = 100.0 * done / self.total if self.total else 100.0
        left = max(self.total - done, 0)
        eta = "0s" if not left else f"{left / rate:.0f}s" if rate > 0 else "?"
        return (f"{self.name}: {done:,}/{self.total:,} records applied ({pct:.0f}%), "
                f"{rate:,.0f} records/s, ETA {eta}")  # fmt: skip

    def update(self, done: int) -> None:
        """``done`` records are applied now."""
        if self._bar is not None:
            self._bar.update(done - self._done)
        else:
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                log.info("%s", self.line(done, now))
        self._done = done

    def close(self, done: int) -> None:
        """The last update; ends the bar, or logs the final line."""
        if self._bar is not None:
            self._bar.update(done - self._done)
            self._bar.close()
        else:
            log.info("%s", self.line(done))
        self._done = done
