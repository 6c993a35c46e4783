"""Helpers shared by the e2e tests (a module of its own: test modules import it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from iccache_sidecar.local.cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "iccache"
KUBE_VERSION = "1.30.0"  # for `helm template` without a cluster: the oldest supported


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
