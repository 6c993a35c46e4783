"""End-to-end tests: the chart, the operator under the chart's RBAC, and the data plane
started from what the operator rendered.

They run against any cluster: set ICCACHE_E2E_KUBECONFIG to its kubeconfig (the kind
script does). Without it they start the real local control plane (etcd, kube-apiserver,
controller-manager, scheduler and kwok's fake nodes) built by ``make setup``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import SUMMARY, Helm

from iccache_dev.local.cluster import Binaries, LocalCluster, start_cluster

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item (``item.report_call``), so that a
    fixture can tell after ``yield`` whether its test passed (the real-node journey's
    steps stop at the first failure)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if SUMMARY in config.stash:
        title, lines = config.stash[SUMMARY]
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    external = os.environ.get("ICCACHE_E2E_KUBECONFIG")
    if external:
        config = yaml.safe_load(Path(external).read_text())
        server = config["clusters"][0]["cluster"]["server"]
        yield LocalCluster(
            tmp_path_factory.mktemp("external"), Path(external), server, Binaries.find()
        )
        return
    local = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def helm(cluster: LocalCluster) -> Helm:
    return Helm(cluster)


@pytest.fixture
def new_namespace(cluster: LocalCluster) -> Iterator[Callable[..., str]]:
    """A factory of fresh namespaces, all deleted afterwards."""
    made: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        name = f"e2e-{uuid.uuid4().hex[:8]}"
        cluster.kubectl("create", "namespace", name)
        for key, value in (labels or {}).items():
            cluster.kubectl("label", "namespace", name, f"{key}={value}")
        made.append(name)
        return name

    yield make
    for name in made:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
