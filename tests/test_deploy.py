"""deploy/: the Grafana dashboard and the Prometheus alerts use only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import Metric

from processor.counts import Counts
from processor.metrics import WorkerMetrics
from producer.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "livewindows.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"

# Gauges the processor and the billing consumer export by these names (issue 16),
# beside the producer's and the worker's counters collected below.
GAUGES = {
    "livewindows_worker_consumer_lag_records",
    "livewindows_worker_watermark_age_seconds",
    "livewindows_worker_open_windows",
    "livewindows_worker_buffered_events",
    "livewindows_billing_consumer_lag_records",
    "livewindows_billing_last_window_timestamp_seconds",
}
_METRIC = re.compile(r"\blivewindows_[a-z0-9_]+")
# Grafana's variables, as Prometheus would see them after Grafana replaced them.
_GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}


def _series_names(family: Metric) -> set[str]:
    """The names of the samples a metric family is exposed as."""
    if family.type == "counter":
        return {f"{family.name}_total"}
    if family.type == "histogram":
        return {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
    return {family.name}


def _known() -> set[str]:
    producer = Metrics()
    producer.count_request("cloudflare", 202)
    families = [*producer.collect(), *WorkerMetrics(Counts).collect()]
    return {name for family in families for name in _series_names(family)} | GAUGES


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out = []
    for panel in document["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of the dashboard."""
    return [
        (panel["title"], target["expr"])
        for panel in _panels(_dashboard())
        for target in panel.get("targets", [])
    ]


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_dashboard_loads_and_every_panel_queries_prometheus() -> None:
    document = _dashboard()
    assert document["uid"] == "livewindows" and document["title"]
    panels = _panels(document)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [panel for panel in panels if panel["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["targets"], f"{panel['title']}: no query"
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what it shows"


def test_every_dashboard_query_names_only_metrics_that_exist() -> None:
    known = _known()
    for title, expr in _dashboard_exprs():
        unknown = set(_METRIC.findall(expr)) - known
        assert not unknown, f"{title}: {sorted(unknown)} not exported by livewindows"


def test_the_dashboard_shows_every_metric_of_the_worker_and_the_new_gauges() -> None:
    used = {name for _title, expr in _dashboard_exprs() for name in _METRIC.findall(expr)}
    wanted = {n for n in _known() if n.startswith("livewindows_worker_")} | GAUGES
    assert wanted <= used, f"not on the dashboard: {sorted(wanted - used)}"


def test_every_alert_names_only_metrics_that_exist_and_says_what_it_means() -> None:
    known = _known()
    rules = _alert_rules()
    assert {
        "LivewindowsWatermarkStale",
        "LivewindowsDeadLetters",
        "LivewindowsProducerUnavailable",
        "LivewindowsBillingLagging",
    } <= {rule["alert"] for rule in rules}
    readme = (ROOT / "README.md").read_text()
    for rule in rules:
        unknown = set(_METRIC.findall(rule["expr"])) - known
        assert not unknown, f"{rule['alert']}: {sorted(unknown)} not exported by livewindows"
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert f"`{rule['alert']}`" in readme, f"README does not explain {rule['alert']}"


_promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(_promtool is None, reason="promtool is not installed")


def _promtool_run(*args: str, cwd: Path = PROMETHEUS) -> None:
    assert _promtool is not None
    done = subprocess.run(
        [_promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_checks_the_alert_rules() -> None:
    _promtool_run("check", "rules", "alerts.yml")


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    _promtool_run("test", "rules", "alerts.test.yml")


@needs_promtool
def test_promtool_checks_the_example_scrape_config() -> None:
    _promtool_run("check", "config", "prometheus.yml")


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule, which `promtool check rules` parses."""
    rules = []
    for index, (_title, expr) in enumerate(_dashboard_exprs()):
        for variable, value in _GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"an unknown Grafana variable in {expr}"
        rules.append({"record": f"livewindows:dashboard_query_{index}", "expr": expr})
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    _promtool_run("check", "rules", "queries.yml", cwd=tmp_path)
