"""The chart's recording rules and alerts (charts/iccache/rules/prometheus-rules.yaml):
valid for Prometheus, each alert firing on series that should trigger it and silent on
ones that should not (promtool's rule unit tests in prometheus/rules_test.yaml), and
naming only metrics the router exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts/iccache/rules/prometheus-rules.yaml"
RULE_TESTS = Path(__file__).parent / "prometheus" / "rules_test.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: make setup installs it (Debian's prometheus)")
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, check=False, cwd=RULE_TESTS.parent
    )


def test_rules_are_valid_for_prometheus() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_when_it_should_and_only_then() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert alerts == tested, "an alert without a unit test"


def test_rules_name_only_metrics_the_router_exports() -> None:
    from iccache_sidecar.metrics import Metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    exported = set()
    for family in Metrics().registry.collect():
        exported |= {family.name + s for s in suffixes.get(family.type, [""])}
    named = set(re.findall(r"\b(iccache_[a-z_]+)\b", RULES.read_text()))
    assert named
    assert named <= exported, named - exported


def test_every_dashboard_query_names_only_metrics_the_router_exports() -> None:
    """The queries the real-node journey runs against a real Prometheus (where each
    must return data), checked here for names that no router exports."""
    from iccache_dev.local.prometheus import panel_queries
    from iccache_sidecar.metrics import Metrics

    dashboard = json.loads((ROOT / "charts/iccache/dashboards/iccache.json").read_text())
    panels = panel_queries(dashboard, {"namespace": "team", "cache": "demo"})
    assert len(panels) >= 10
    exported = {family.name for family in Metrics().registry.collect()}
    for title, exprs in panels:
        for expr in exprs:
            assert "$" not in expr, (title, expr)
            for name in re.findall(r"\b(iccache_[a-z_]+?)(?:_total|_bucket)?\{", expr):
                assert name in exported, (title, name)
