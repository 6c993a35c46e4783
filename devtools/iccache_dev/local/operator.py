"""Run the operator as a local process (kopf) against a cluster, for tests."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from iccache_dev.local.process import ManagedProcess, free_port


def start_operator(
    args: Sequence[str], kubeconfig: Path, log: Path, env: dict[str, str] | None = None
) -> ManagedProcess:
    """``kopf run -m iccache_operator.handlers ARGS`` with its liveness endpoint on a free
    loopback port; returns once that endpoint answers."""
    port = free_port()
    proc = ManagedProcess(
        "operator",
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "-m",
            "iccache_operator.handlers",
            *args,
            f"--liveness=http://127.0.0.1:{port}/healthz",
        ],
        log,
        env={**(env or {}), "KUBECONFIG": str(kubeconfig)},
    )

    def live() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    proc.wait_ready(live, timeout=60)
    return proc
