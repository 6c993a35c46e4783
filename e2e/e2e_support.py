"""Helpers shared by the e2e tests (a module of its own: test modules import it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from iccache_dev.local.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_chart  # noqa: E402  (the chart's generator: paths and the oldest Kubernetes)

CHART = gen_chart.CHART
# A titled table a test leaves for the end of pytest's report (e2e/conftest.py prints it).
SUMMARY = pytest.StashKey[tuple[str, list[str]]]()
KUBE_VERSION = gen_chart.KUBE_VERSION


class Helm:
    """The helm binary, against the test cluster."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.cluster.binaries["helm"], "--kubeconfig", str(self.cluster.kubeconfig)]
        done = subprocess.run(
            [*argv, *args], capture_output=True, text=True, timeout=300, input=input
        )
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stderr}")
        return done
