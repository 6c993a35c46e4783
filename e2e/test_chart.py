"""The chart itself: lint, the values schema, and every rendered manifest accepted by
the API server (server-side dry run), also the generated plain manifests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2e_support import CHART, KUBE_VERSION, Helm, gen_chart

from iccache_dev.local.cluster import LocalCluster

EVERYTHING = [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.dashboard.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "sample.enabled=true",
]


@pytest.mark.parametrize("values", [[], ["--set", "scope=namespaced", *EVERYTHING]])
def test_helm_lint_is_clean(helm: Helm, values: list[str]) -> None:
    done = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("operator.replicas=-1", "/operator/replicas"),
        ("sample.spec.models.small.engine=tgi", "/sample/spec/models/small/engine"),
        ("scope=everywhere", "/scope"),
        ("operator.replica=1", "'replica' not allowed"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("sample.spec.retrieval.maxExamples=99", "/sample/spec/retrieval/maxExamples"),
    ],
)
def test_wrong_values_fail_install_naming_the_value(
    helm: Helm, new_namespace: Callable[..., str], setting: str, named: str
) -> None:
    ns = new_namespace()
    done = helm("install", "bad", str(CHART), "-n", ns, "--set", setting, check=False)
    assert done.returncode != 0
    assert named in done.stderr, done.stderr
    assert helm("list", "-n", ns, "-q").stdout.strip() == ""  # nothing was installed


def test_chart_and_plain_manifests_are_generated_from_their_sources() -> None:
    assert gen_chart.check(with_manifests=True) == []


def render(helm: Helm, namespace: str, *values: str) -> str:
    return helm(
        "template", "rel", str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION, *values
    ).stdout


def dry_run(cluster: LocalCluster, *args: str, input: str | None = None) -> str:
    done = cluster.kubectl("apply", "--dry-run=server", *args, input=input, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def service_monitor_crd(cluster: LocalCluster) -> None:
    """prometheus-operator's own ServiceMonitor and PrometheusRule CRDs (from its Go
    module; see setup)."""
    for plural in ("servicemonitors", "prometheusrules"):
        crd = cluster.binaries.folder / f"monitoring.coreos.com_{plural}.yaml"
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
        cluster.wait_established(f"{plural}.monitoring.coreos.com")


def test_every_rendered_manifest_passes_server_side_dry_run(
    cluster: LocalCluster,
    helm: Helm,
    new_namespace: Callable[..., str],
    service_monitor_crd: None,
) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(gen_chart.CRD_SOURCE))
    restricted = {"pod-security.kubernetes.io/enforce": "restricted"}
    release_ns, watched = new_namespace(restricted), new_namespace(restricted)
    variants = {
        "defaults (cluster scope)": [],
        "namespaced, every option": [
            "--set",
            "scope=namespaced",
            "--set",
            f"watchNamespaces={{{release_ns},{watched}}}",
            *EVERYTHING,
        ],
        "cluster scope, every option": EVERYTHING,
    }
    for name, values in variants.items():
        text = render(helm, release_ns, *values)
        out = dry_run(cluster, "-f", "-", input=text)
        kinds = {line.split("/")[0] for line in out.splitlines()}
        assert "deployment.apps" in kinds, (name, out)
        if "--set" in values and "sample.enabled=true" in values:
            assert "incontextcache.iccache.dev" in kinds
            assert "servicemonitor.monitoring.coreos.com" in kinds
            assert "prometheusrule.monitoring.coreos.com" in kinds
    # The helm test hook renders with the rest; the plain manifests apply with -k.
    assert "test-health" in render(helm, release_ns)
    cluster.kubectl("create", "namespace", gen_chart.NAMESPACE, check=False)
    dry_run(cluster, "-k", str(gen_chart.MANIFESTS))
