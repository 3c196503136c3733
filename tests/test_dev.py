"""``feedamp dev`` on this machine: embedded broker and Redis, worker, demo, clean stop."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Starts the broker, Redis and a worker itself (through ``feedamp dev``).
pytestmark = pytest.mark.integration


def test_dev_once_plays_the_demo_and_stops_cleanly():
    out = subprocess.run(
        [sys.executable, "-m", "feedamp.cli", "dev", "--once"],
        capture_output=True, timeout=240, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    # dave follows bob and carol, who both reposted alice's p1; bob's p2 repost was withdrawn
    assert "post p1 by alice  reposted by carol, bob" in text
    assert "post p2" not in text.split("Following feed of dave")[1].split("Following feed of")[0]
    # erin followed alice last and got her recent posts backfilled
    erin = text.split("Following feed of erin")[1]
    assert "post p1 by alice" in erin and "post p2 by alice" in erin
    # the shop: bob's gift with the first code of the sample pool, dave's purchase through
    # carol's repost of alice's post, credited to both
    assert "editor-90 (small-gestures-spring) from bob  code CUTPRO-7Q2M" in text
    assert "order o1  tripod  24.99 EUR  paid (placed -> paid)" in text
    assert "Sales credited to alice: 1 order(s) 24.99 EUR" in text
    assert "Sales credited to carol: 1 order(s) 24.99 EUR" in text
    assert "dead-letter topic 'dead-letter': 1 event(s)" in text
    assert "missing field 'author_id'" in text


def test_dev_stops_everything_on_ctrl_c():
    import re
    import signal
    import socket

    proc = subprocess.Popen(
        [sys.executable, "-m", "feedamp.cli", "dev"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        text = _until_running(proc)
        ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
        worker_pid = int(re.search(r"worker  pid (\d+)", text).group(1))
        assert len(ports) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for port in ports:  # broker and Redis are gone
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, port
    try:  # and so is the worker
        import os

        os.kill(worker_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_dev_no_demo_prints_exports_runs_the_sample_and_stops_on_sighup():
    import json
    import os
    import re
    import signal
    import socket
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "feedamp.cli", "dev", "--no-demo"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        text = _until_running(proc)
        assert "playing the demo" not in text
        exports = dict(re.findall(r"^  export (\w+)=(\S+)$", text, re.M))
        assert set(exports) == {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "FEEDAMP_CAMPAIGNS"}
        log_path = re.search(r", log (\S+)$", text, re.M).group(1)
        sample = re.search(r"^  feedamp produce (\S+)", text, re.M).group(1)
        env = {**os.environ, **exports}
        cli = [sys.executable, "-m", "feedamp.cli"]
        out = subprocess.run([*cli, "produce", sample], env=env, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 120
        feed: list = []
        while {i["post_id"] for i in feed} != {"s1", "s2"}:
            assert time.monotonic() < deadline, feed
            out = subprocess.run([*cli, "feed", "noa", "--json"], env=env, capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
            feed = json.loads(out.stdout)["items"]
        assert [i["reposted_by"] for i in feed if i["post_id"] == "s1"] == [["sam"]]
        assert os.path.exists(log_path)
        ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
        worker_pid = int(re.search(r"worker  pid (\d+)", text).group(1))
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, port
    try:
        os.kill(worker_pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_dev_cluster_runs_the_demo_on_three_masters_and_stops_them():
    """``feedamp dev --cluster`` forms a three-master cluster, plays the demo on it (feeds,
    gifts, credited orders) through a worker, reaches its running line, and Ctrl-C leaves
    no node running."""
    import re
    import signal
    import socket

    proc = subprocess.Popen(
        [sys.executable, "-m", "feedamp.cli", "dev", "--cluster"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        text = _until_running(proc)
        nodes = re.search(r"redis cluster nodes (.*)", text).group(1).split()  # type: ignore[union-attr]
        assert len(nodes) == 3
        assert "post p1 by alice  reposted by carol, bob" in text
        assert "Sales credited to carol: 1 order(s) 24.99 EUR" in text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    for node in nodes:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(node.split(":")[1]))) != 0, node


def _until_running(proc: subprocess.Popen) -> str:
    """``feedamp dev``'s output up to its ``running;`` line (4 minutes at most)."""
    import time

    lines: list[str] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "feedamp dev exited early:\n" + "".join(lines)
        lines.append(line)
        if line.startswith("running;"):
            break
    return "".join(lines)
