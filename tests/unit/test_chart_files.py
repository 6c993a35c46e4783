"""The chart's copies of generated contracts match their sources (no cluster, no helm)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import gen_chart  # noqa: E402


def test_chart_crd_is_byte_for_byte_the_generated_crd() -> None:
    assert gen_chart.CRD_COPY.read_bytes() == gen_chart.CRD_SOURCE.read_bytes()


def test_values_schema_is_up_to_date() -> None:
    assert gen_chart.check(with_manifests=False) == []


def test_sample_schema_is_draft07_with_the_crds_rules() -> None:
    schema = json.loads(gen_chart.SCHEMA_FILE.read_text())
    spec = schema["properties"]["sample"]["properties"]["spec"]
    small = spec["properties"]["models"]["properties"]["small"]
    assert small["properties"]["engine"]["enum"] == ["vllm", "llamacpp", "external"]
    assert small["additionalProperties"] is False  # typos are refused, not pruned
    cost = small["properties"]["costPerToken"]
    assert isinstance(cost["exclusiveMinimum"], int | float)  # draft-07, not OpenAPI 3.0
    assert "x-kubernetes-validations" not in json.dumps(schema)


def test_dashboard_queries_name_only_metrics_the_router_exports() -> None:
    """A renamed metric would leave a panel silently empty."""
    import re

    from iccache_sidecar.metrics import Metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    exported = set()
    for family in Metrics().registry.collect():
        exported |= {family.name + s for s in suffixes.get(family.type, [""])}
    dashboard = json.loads((ROOT / "charts/iccache/dashboards/iccache.json").read_text())
    named = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\b(iccache_[a-z_]+)\b", target["expr"])
    }
    assert named, "no queries found"
    assert named <= exported, f"not exported: {sorted(named - exported)}"
    assert {"iccache_quality_loss_upper", "iccache_quality_max_loss"} <= named
