"""The monitoring files in ``deploy/`` parse, and every series their queries name is one a
worker exports (or Prometheus' own ``up``), so a renamed metric cannot leave a dashboard
panel or an alert silently empty."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace

import yaml
from feedamp.models.decisions import Decision
from feedamp.streams import DeadLetter, Outcome, Record
from feedamp.streams.metrics import Metrics
from feedamp.streams.web import consumer_gauges

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

#: PromQL words that look like series names.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "and",
            "or", "unless", "bool", "inf", "nan"}  # fmt: skip
#: Series Prometheus makes itself.
BUILTIN = {"up"}


def exported_names() -> set[str]:
    """Every family and sample name a worker's registry exposes, all series populated."""
    metrics = Metrics()
    record = Record("posts", 0, 1, b"k", b'{"type": "repost"}')
    decision = Decision("e", "r", "u", "p", 1, "delivered", (), 5)
    metrics.observe([record], Outcome([DeadLetter(record, "x")], [decision], 3), 0.01)
    metrics.watermark = 0.0
    app = SimpleNamespace()  # no consumer yet: the gauges are there, without partitions
    metrics.add_gauges(lambda: consumer_gauges(app, {"posts"}))  # type: ignore[arg-type]
    names = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(s.name for s in family.samples)
    return names


def series_in(expr: str) -> set[str]:
    """The series names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", "", expr)  # numbers
    words = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {w for w in words if w not in KEYWORDS}


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "feedamp.json").read_text())


def test_series_parser_finds_names_not_functions_or_labels():
    expr = ('histogram_quantile(0.99, sum by (le) (rate(feedamp_batch_seconds_bucket[5m])))'
            ' / on (job) up{job="x"} > 2.5')  # fmt: skip
    assert series_in(expr) == {"feedamp_batch_seconds_bucket", "up"}


def test_alert_rules_parse_and_name_only_exported_series():
    exported = exported_names() | BUILTIN
    rules = alert_rules()
    assert len(rules) >= 6
    covered = set()
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule
        assert rule["annotations"]["summary"], rule["alert"]
        names = series_in(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], names - exported)
        covered |= names
    for wanted in ("feedamp_consumer_lag", "feedamp_watermark_lag_seconds",
                   "feedamp_dead_letters_total", "feedamp_batch_seconds_bucket"):  # fmt: skip
        assert wanted in covered


def test_dashboard_parses_and_names_only_exported_series():
    exported = exported_names() | BUILTIN
    board = dashboard()
    assert board["uid"] == "feedamp"
    covered = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "prometheus", panel["title"]
        for target in panel["targets"]:
            names = series_in(target["expr"])
            assert names and names <= exported, (panel["title"], names - exported)
            covered |= names
    # lag, watermark lag, dead letters, batch latency, fan-out rate, decisions by kind
    for wanted in ("feedamp_consumer_lag", "feedamp_watermark_lag_seconds",
                   "feedamp_dead_letters_total", "feedamp_batch_seconds_bucket",
                   "feedamp_fanout_deliveries_total", "feedamp_decisions_total",
                   "process_resident_memory_bytes"):  # fmt: skip
        assert wanted in covered


def test_compose_wires_prometheus_and_grafana_to_the_workers():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    health = " ".join(services["worker"]["healthcheck"]["test"])
    assert "/healthz" in health and "urlopen" in health  # an HTTP status, not a TCP connect
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["dns_sd_configs"][0]["names"] == ["worker"]
    assert job["dns_sd_configs"][0]["port"] == 6066
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]
              if v.startswith("./")}  # fmt: skip
    for rule_file in prometheus["rule_files"]:
        assert (ROOT / mounts[rule_file]).is_file()
    grafana = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]
               if v.startswith("./")}  # fmt: skip
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "feedamp.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert any(target.startswith(path + "/") for target in grafana)
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert source["datasources"][0]["uid"] == "prometheus"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_compose_healthcheck_fails_on_a_503():
    """The worker's healthcheck command, run as Compose would against /healthz answering
    200, then 503."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    test = compose["services"]["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "python"
    server = HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        command = [sys.executable, *[a.replace("6066", str(port)) for a in test[2:]]]
        assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
        _Health.status = 503
        assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0
    finally:
        _Health.status = 200
        server.shutdown()


def test_the_image_holds_every_package():
    """The Dockerfile copies each package directory pyproject.toml installs."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    dockerfile = (ROOT / "Dockerfile").read_text()
    for directory in dirs:
        assert f"COPY {directory}/ {directory}/" in dockerfile, directory
