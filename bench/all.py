"""Every benchmark figure in one command: fan-out, latency and memory (``bench/run.py``),
light events against Faust and raw consumption and an idle worker (``bench/light.py``),
replay against raw consumption (``bench/replay.py``), and fan-out on a three-master Redis
Cluster (``bench/cluster.py``).

Runs each script in turn as a child process (each starts its own broker and Redis, so
none disturbs another), prints their output as it comes, then one summary line per
target and, last, a machine-readable line of ``key=value`` pairs:

    fanout_ratio, fanout_ratio_10k   fan-out deliveries/s over the ZADD ceiling (N=1k, 10k)
    light_vs_faust, light_vs_raw     gift events/s over a minimal Faust agent, over raw reads
    graph_vs_faust, graph_vs_raw     the same for graph events (follows, unfollows, blocks,
                                     mutes and their undos)
    replay_ratio                     replay events/s over raw consumption
    idle_cpu, idle_redis_ops         an idle worker's share of a core and Redis commands/s
    p99_ms                           repost produced -> last of 1,000 followers, p99
    bytes_per_entry_repost           Redis bytes per Following entry filled by reposts
    fanout_ratio_cluster             fan-out deliveries/s on a 3-master Redis Cluster over the
                                     ZADD ceiling of one server (``bench/cluster.py``)
    fanout_log_replay_vs_worker      deliveries/s replaying the fan-out log's posts and
                                     reposts (follows replayed first) over a live worker's
                                     on the same log (follows applied first)
    fanout_log_replay_vs_live        deliveries/s replaying the fan-out log (sources of 1,000
                                     followers posting and reposting, ``bench/replay.py``)
                                     over the live fan-out's deliveries/s (``bench/run.py``,
                                     N=1k)
    fanout_posts_replay_vs_live      the same with the follows replayed before the clock
                                     starts, as the live benchmark times it (no target)
    replay_vs_live_fanout            the same for the mixed log (follows, posts and reposts of
                                     users of about 15 followers on average): no target,
                                     its replay is bound by per-event steps, not deliveries
    <script>_<key>                   every other figure of each script (``run_p50_ms``...)

A figure a script could not produce is ``null``. Run ``python bench/all.py`` or
``--quick`` (every script's quick mode, about two minutes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (script, extra arguments in a quick run).
SCRIPTS = (("run.py", ["--quick"]), ("light.py", ["--quick"]), ("replay.py", ["--quick"]),
           ("cluster.py", ["--quick"]))  # fmt: skip
#: (key, target, "min" if the figure must reach the target, "max" if it must stay below).
TARGETS = (
    ("fanout_ratio", 0.15, "min"),
    ("fanout_ratio_10k", 0.15, "min"),
    ("light_vs_faust", 0.8, "min"),
    ("light_vs_raw", 0.03, "min"),
    ("graph_vs_faust", 0.8, "min"),
    ("graph_vs_raw", 0.03, "min"),
    ("replay_ratio", 0.3, "min"),
    ("idle_cpu", 0.03, "max"),
    ("idle_redis_ops", 50, "max"),
    ("p99_ms", 250, "max"),
    ("bytes_per_entry_repost", 32, "max"),
    ("fanout_ratio_cluster", 0.15, "min"),
    ("fanout_log_replay_vs_worker", 1.0, "min"),
    ("fanout_log_replay_vs_live", 1.0, "min"),
)
#: Figures computed from two scripts' figures: key -> (numerator, denominator). Those
#: without a target go with the scripts' other figures.
DERIVED = {
    "fanout_log_replay_vs_live": ("replay_fanout_log_deliveries_per_s", "run_fanout_per_s"),
    "fanout_posts_replay_vs_live": (
        "replay_fanout_log_posts_deliveries_per_s",
        "run_fanout_per_s",
    ),
    "replay_vs_live_fanout": ("replay_replay_deliveries_per_s", "run_fanout_per_s"),
}


def parse_figures(line: str) -> dict[str, float]:
    """``key=value`` pairs of a script's last line (values that are not numbers skipped)."""
    figures: dict[str, float] = {}
    for pair in line.split():
        key, _, value = pair.partition("=")
        try:
            figures[key] = float(value)
        except ValueError:
            continue
    return figures


def run_script(name: str, args: list[str]) -> dict[str, float]:
    """Run ``bench/<name>``, echoing its output; its last line's figures ({} if it failed)."""
    print(f"=== {name} {' '.join(args)}", flush=True)
    started = time.monotonic()
    argv = [sys.executable, str(HERE / name), *args]
    proc = subprocess.Popen(argv, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.strip():
            last = line.strip()
    code = proc.wait()
    print(f"=== {name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    return parse_figures(last) if code == 0 else {}


def number(value: float | None) -> str:
    """A figure as printed on the last line: ``null``, an integer or a decimal."""
    if value is None:
        return "null"
    return str(int(value)) if value == int(value) else repr(value)


def verdicts(figures: dict[str, float | None]) -> list[str]:
    """One line per target: the figure, the target, met or missed."""
    lines = []
    for key, target, sense in TARGETS:
        value = figures.get(key)
        if value is None:
            lines.append(f"{key}: not measured (target {'>=' if sense == 'min' else '<'} {target})")
            continue
        met = value >= target if sense == "min" else value < target
        op = ">=" if sense == "min" else "<"
        lines.append(f"{key}: {value:g} (target {op} {target}: {'met' if met else 'MISSED'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark; print the figures, the last line machine-readable."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each script's quick mode")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    started = time.monotonic()
    print(f"feedamp benchmarks ({'quick' if args.quick else 'full'}) at {commit or '?'}")
    keys = [key for key, _, _ in TARGETS]
    found: dict[str, float] = {}
    extra: dict[str, float] = {}  # the scripts' other figures, named after their script
    for name, quick in SCRIPTS:
        for key, value in run_script(name, quick if args.quick else []).items():
            if key in keys:
                found[key] = value
            else:
                extra[f"{Path(name).stem}_{key}"] = value
    for key, (top, bottom) in DERIVED.items():
        if extra.get(top) is not None and extra.get(bottom):
            (found if key in keys else extra)[key] = round(extra[top] / extra[bottom], 3)
    figures: dict[str, float | None] = {key: found.get(key) for key in keys}
    print(f"=== summary ({time.monotonic() - started:.0f} s)")
    for line in verdicts(figures):
        print(line)
    print(" ".join(f"{k}={number(v)}" for k, v in {**figures, **extra}.items()))
    return 0 if all(figures[k] is not None for k in keys) else 1


if __name__ == "__main__":
    sys.exit(main())
