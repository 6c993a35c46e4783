"""The operator image against the local control plane, run the way the chart's pod runs
it: the chart's arguments and environment, in-cluster credentials (a ServiceAccount
token and the cluster's CA where the kubelet would mount them), user 10001, a read-only
root filesystem with /tmp as its only writable place. It must report healthy and
reconcile the CPU sample to Ready (the sample's pods run on kwok's fake nodes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from iccache_dev.local.cluster import LocalCluster, start_cluster
from iccache_dev.local.containers import Containers, PodContainer, Volume
from iccache_dev.local.process import free_port
from iccache_operator.crd import CRD_FILE

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "iccache"
SAMPLE = CRD_FILE.parent / "samples" / "cpu-llamacpp.yaml"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"  # where the kubelet mounts it
RELEASE = "icc"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield local
    finally:
        local.stop()


def helm(cluster: LocalCluster, *args: str) -> str:
    argv = [cluster.binaries["helm"], "--kubeconfig", str(cluster.kubeconfig), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _loopback(arg: str, port: int) -> str:
    """The liveness endpoint on a loopback port (the container shares the host network)."""
    return f"--liveness=http://127.0.0.1:{port}/healthz" if arg.startswith("--liveness") else arg


def service_account_volume(cluster: LocalCluster, namespace: str, account: str, at: Path) -> Path:
    """The files of a projected ServiceAccount volume: token, ca.crt, namespace."""
    at.mkdir()
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h")
    (at / "token").write_text(token.stdout.strip())
    ca = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    shutil.copy(ca["certificate-authority"], at / "ca.crt")
    (at / "namespace").write_text(namespace)
    for path in (at, *at.iterdir()):
        os.chown(path, 10001, 10001)
    return at


def test_operator_container_is_healthy_and_reconciles_the_sample(
    images: dict[str, str], cluster: LocalCluster, tmp_path: Path
) -> None:
    release_ns, watched = (f"oc-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for ns in (release_ns, watched):
        cluster.kubectl("create", "namespace", ns)
    # The chart with the local image; its pod lands on a kwok node (which runs nothing),
    # so the container below is the only operator at work.
    repo, tag = images["operator"].rsplit(":", 1)
    helm(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        release_ns,
        "--set",
        "scope=namespaced",
        "--set",
        f"watchNamespaces={{{watched}}}",
        "--set",
        f"image.repository={repo}",
        "--set",
        f"image.tag={tag}",
        "--set",
        f"sidecarImage.repository={images['sidecar'].rsplit(':', 1)[0]}",
        "--wait",
        "--timeout=3m",
    )
    deployment = cluster.get_json("deployment", f"{RELEASE}-iccache", "-n", release_ns)
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == images["operator"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]

    health = free_port()
    spec = PodContainer.of(pod, container)
    # The kubelet's part: the ServiceAccount volume and the API server's address.
    host, _, port = cluster.server.removeprefix("https://").partition(":")
    account = service_account_volume(
        cluster, release_ns, pod["serviceAccountName"], tmp_path / "sa"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    os.chown(scratch, 10001, 10001)
    with Containers("icc-op") as pods:
        operator = pods.run_as_pod(
            "operator",
            container["image"],
            replace(spec, args=[_loopback(a, health) for a in spec.args]),
            {"/tmp": scratch},
            env={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
            outside_spec=[Volume(account, SA_DIR)],
        )

        def healthy() -> bool:
            try:
                url = f"http://127.0.0.1:{health}/healthz"
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        operator.wait_ready(healthy, timeout=90)
        cluster.bind_static_volume(watched, "data-demo-redis-0")
        cluster.bind_static_volume(watched, "models", create_claim=True)
        cluster.kubectl("apply", "-n", watched, "-f", str(SAMPLE))
        waited = cluster.kubectl(
            "wait",
            "-n",
            watched,
            "--for=condition=Ready",
            "icc/demo",
            "--timeout=180s",
            check=False,
        )
        assert waited.returncode == 0, (waited.stderr, operator.logs(80))
        children = cluster.kubectl("get", "deployments", "-n", watched, "-o", "name").stdout
        assert "deployment.apps/demo-router" in children.split()
        # Deleting goes through the operator's finalizer, so it needs the container too.
        cluster.kubectl("delete", "icc", "demo", "-n", watched, "--timeout=60s")
        log = operator.logs(400)
        assert "Forbidden" not in log, log
        assert "Not enough permissions" not in log, log
    helm(cluster, "uninstall", RELEASE, "-n", release_ns, "--wait")
