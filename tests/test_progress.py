"""Replay progress: a tqdm bar on a terminal, log lines elsewhere, of records applied."""

from __future__ import annotations

import io
import logging

from feedamp.ops.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_of_records_applied():
    out = Terminal()
    bar = ProgressBar(200, out, name="replay")
    bar.update(50)
    bar.close(200)
    text = out.getvalue()
    assert "replay (applied)" in text and "200/200" in text and "\r" in text


def test_a_file_gets_periodic_log_lines_without_carriage_returns(caplog):
    out = io.StringIO()
    progress = ProgressBar(1000, out, name="replay", interval=0.0)
    with caplog.at_level(logging.INFO, logger="feedamp.progress"):
        progress.update(250)
        progress.close(1000)
    assert out.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("replay: 250/1,000 records applied (25%)")
    assert "ETA" in lines[0] and "records/s" in lines[0]
    assert lines[-1].startswith("replay: 1,000/1,000 records applied (100%)")
    assert not any("\r" in x for x in lines)


def test_the_line_tells_rate_and_eta():
    progress = ProgressBar(1000, io.StringIO())
    line = progress.line(100, now=progress.started + 10)
    assert line == "replay: 100/1,000 records applied (10%), 10 records/s, ETA 90s"


def test_a_real_terminal_even_unsized_gets_the_bar():
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()  # nobody set its size: 0 columns, 0 rows
    code = ("import sys; from feedamp.ops.progress import ProgressBar; "
            "p = ProgressBar(7, sys.stderr); p.update(3); p.close(7)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=slave)
    assert proc.wait(60) == 0
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert "replay (applied): 100%" in data.decode() and "7/7" in data.decode(), data
