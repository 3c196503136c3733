"""Operator errors end a command fast with one line naming the setting and the address,
and a non-zero exit code; bad values get argparse-style messages. Run as subprocesses
(the exit code, the stderr and the time are the point) against the session's real
broker and Redis, or a closed port."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson
import pytest
from feedamp.embedded.services import free_port, redis_server_binary

#: Generous bound on a failure's time (the checks wait 3 s at most; start-up ~1 s).
FAST = 15.0


def feedamp(*argv: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str, float]:
    """Run ``feedamp argv`` with ``env`` over a clean FEEDAMP_* environment; return the exit
    code, stdout, stderr and seconds taken."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("FEEDAMP_", "KAFKA_", "REDIS_"))}  # fmt: skip
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "feedamp.cli", *argv], env={**base, **env},
                         capture_output=True, text=True, timeout=timeout)  # fmt: skip
    return out.returncode, out.stdout, out.stderr, time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Unclosed" not in stderr
    return lines[0]


@pytest.fixture
def env(broker, redis_server) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": broker.address,
            "REDIS_URL": f"redis://{redis_server.address}/0"}  # fmt: skip


def test_redis_at_a_closed_port(env):
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err, took = feedamp("feed", "alice", env={**env, "REDIS_URL": url})
    assert code == 2 and took < FAST
    assert (
        one_line(err) == f"feedamp feed: cannot reach Redis at REDIS_URL={url}: connection refused"
    )


def test_redis_at_the_brokers_port(env, broker):
    url = f"redis://{broker.address}/0"
    code, _, err, took = feedamp("status", env={**env, "REDIS_URL": url})
    assert code == 2 and took < FAST
    assert one_line(err) == (
        f"feedamp status: cannot reach Redis at REDIS_URL={url}: no answer "
        "within 3 s (is that address a Redis server?)"
    )


def test_redis_url_without_a_scheme_and_its_password_kept_out(env, redis_server):
    code, _, err, took = feedamp(
        "feed", "a", env={**env, "REDIS_URL": f"x:pw@{redis_server.address}"}
    )
    assert code == 2 and took < FAST
    line = one_line(err)
    assert "REDIS_URL must start with redis://" in line and "pw" not in line


def test_redis_password_is_not_printed(env):
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    code, _, err, _ = feedamp("gifts", "a", env={**env, "REDIS_URL": url})
    assert code == 2 and "s3cret" not in err and "REDIS_URL=redis://:***@127.0.0.1:" in err


def test_broker_at_a_closed_port(env):
    servers = f"127.0.0.1:{free_port()}"
    for argv in (["status"], ["dlq", "list"], ["produce", "-"], ["worker"]):
        code, _, err, took = feedamp(*argv, env={**env, "KAFKA_BOOTSTRAP_SERVERS": servers})
        assert code == 2 and took < FAST, (argv, err)
        assert one_line(err) == (
            f"feedamp {' '.join(argv[:2] if argv[0] == 'dlq' else argv[:1])}: "
            f"cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS={servers}: "
            "connection refused"
        )


def test_broker_at_a_port_that_is_not_kafka(env, redis_server):
    servers = redis_server.address
    code, _, err, took = feedamp("produce", "-", env={**env, "KAFKA_BOOTSTRAP_SERVERS": servers})
    assert code == 2 and took < FAST
    assert one_line(err) == (
        f"feedamp produce: cannot reach Kafka at KAFKA_BOOTSTRAP_SERVERS="
        f"{servers}: no answer within 3 s (is that address a Kafka broker?)"
    )


def test_debug_and_json_logs_carry_the_traceback(env):
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err, _ = feedamp("--debug", "feed", "a", env={**env, "REDIS_URL": url})
    assert code == 2 and err.startswith("feedamp feed: cannot reach Redis") and "Traceback" in err
    code, _, err, _ = feedamp("feed", "a", "--debug", env={**env, "REDIS_URL": url})
    assert code == 2 and "Traceback" in err
    json_env = {**env, "REDIS_URL": url, "FEEDAMP_LOG_FORMAT": "json"}
    code, _, err, _ = feedamp("feed", "a", env=json_env)
    (line,) = err.strip().splitlines()
    entry = orjson.loads(line)
    assert code == 2 and entry["level"] == "ERROR" and "connection refused" in entry["message"]
    assert "OperatorError" in entry["exception"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["feed", "a", "--limit", "0"],
            "feedamp feed: error: argument --limit: must be 1..1000, got 0",
        ),
        (["feed", "a", "--limit", "5000"], "argument --limit: must be 1..1000, got 5000"),
        (["orders", "a", "--limit", "x"], "argument --limit: not an integer: 'x'"),
        (["feed", "a", "--cursor", "nope"], "argument --cursor: not a cursor: 'nope'"),
        (["worker", "--loglevel", "verbose"], "argument --loglevel: invalid choice: 'verbose'"),
        (["replay", "--rebuild", "--grace", "-1"], "argument --grace: must be >= 0"),
    ],
)
def test_bad_arguments(env, argv, message):
    code, out, err, took = feedamp(*argv, env=env)
    assert code == 2 and took < FAST and out == ""
    assert err.startswith("usage: feedamp") and message in err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        ({"FEEDAMP_WEB_PORT": "99999"}, "FEEDAMP_WEB_PORT must be 0..65535 (0: off), got 99999"),
        ({"FEEDAMP_CAP_RATE_MAX": "-3"}, "FEEDAMP_CAP_RATE_MAX must be >= 0, got -3"),
        ({"FEEDAMP_FEED_CAP": "lots"}, "FEEDAMP_FEED_CAP must be an integer, got 'lots'"),
    ],
)
def test_bad_settings_are_refused_at_start(env, variables, line):
    code, _, err, took = feedamp("worker", env={**env, **variables})
    assert code == 2 and took < FAST
    assert one_line(err) == f"feedamp worker: {line}"


def test_unknown_variable_is_warned_about_with_the_closest_name(env):
    code, out, err, _ = feedamp("feed", "nobody", env={**env, "FEEDAMP_CAP_RATE_MXA": "3"})
    assert code == 0 and out.startswith("Following feed of nobody")
    assert ("FEEDAMP_CAP_RATE_MXA is not a feedamp setting (did you mean "
            "FEEDAMP_CAP_RATE_MAX?); ignored") in one_line(err)  # fmt: skip


def test_version_and_plain_help(env):
    code, out, _, _ = feedamp("--version", env=env)
    assert code == 0 and out.startswith("feedamp ")
    code, out, _, _ = feedamp("--help", env=env)
    assert code == 0 and "``" not in out and "explain" in out and "decisions" in out


def test_closed_output_pipe_exits_quietly(env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEEDAMP_")}
    proc = subprocess.Popen([sys.executable, "-m", "feedamp.cli", "status"],
                            env={**base, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # like `| head` that has had enough
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert err == ""


def test_missing_redis_server_says_how_to_get_one(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match=r"apt-get install redis-server") as info:
        redis_server_binary()
    assert "feedamp[" not in str(info.value)


def test_worker_with_redis_down_says_so_at_once(env):
    """The worker needs to know at start what Redis it writes to (one Redis or a
    cluster): with none there it stops at once, in one line; a Redis lost later is waited
    out and reported by /healthz (test_web)."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, _, err, took = feedamp("worker", env={**env, "REDIS_URL": url})
    assert code == 2 and took < FAST
    assert (
        one_line(err)
        == f"feedamp worker: cannot reach Redis at REDIS_URL={url}: connection refused"
    )


def test_errors_met_while_running_become_one_line(settings):
    from aiokafka.errors import KafkaConnectionError
    from feedamp.streams.preflight import describe
    from redis.exceptions import ConnectionError as RedisConnectionError

    lost = RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    assert (
        describe(lost, settings) == f"Redis at REDIS_URL={settings.redis_url}: connection refused"
    )
    kafka = describe(KafkaConnectionError("broker gone"), settings)
    assert kafka.startswith(
        f"Kafka at KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers}: "
    )
    assert describe(ZeroDivisionError(), settings) is None  # a bug keeps its traceback
