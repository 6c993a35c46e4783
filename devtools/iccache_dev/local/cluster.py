"""A real Kubernetes control plane on this machine, without Docker.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as processes on
free loopback ports (built from the Go module proxy by ``scripts/build-cluster-tools``);
kwok plays the kubelet for fake nodes: a CPU pool and two GPU pools, so Deployments get
Pods that are scheduled, become Running and Ready, and are garbage-collected.

``python -m iccache_dev.local.cluster up|down`` runs one for interactive use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iccache_dev.local import node as real
from iccache_dev.local.assets import AssetNotFound, ToolFolder, cache_dir
from iccache_dev.local.pki import KeyPair, LocalCA, service_account_keys
from iccache_dev.local.process import (
    ManagedProcess,
    ServiceError,
    free_port,
    http_ok,
    wait_until,
)

K8S_VERSION = "v1.36.3"
POOL_LABEL = "iccache.dev/pool"
GPU = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = real.SERVICE_CIDR
TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "helm",
)


class Binaries(ToolFolder):
    @classmethod
    def find(cls, version: str = K8S_VERSION) -> Binaries:
        folder = Path(os.environ.get("ICCACHE_K8S_BIN", cache_dir() / "k8s" / version))
        if missing := cls.missing(folder, TOOLS):
            raise AssetNotFound(
                f"{', '.join(missing)} missing in {folder}; build them with "
                "`scripts/build-cluster-tools` (part of `make setup`)"
            )
        return cls(folder)


@dataclass(frozen=True)
class FakeNode:
    """A node kwok pretends to run; GPU nodes are tainted as GPU pools usually are."""

    name: str
    pool: str
    gpus: int = 0
    cpu: str = "32"
    memory: str = "128Gi"

    def manifest(self) -> dict[str, Any]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": "110"}
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            POOL_LABEL: self.pool,
        }
        spec: dict[str, Any] = {}
        if self.gpus:
            capacity[GPU] = str(self.gpus)
            labels[f"{GPU}.present"] = "true"
            spec["taints"] = [{"key": GPU, "value": "present", "effect": "NoSchedule"}]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": labels,
            },
            "spec": spec,
            "status": {"capacity": capacity, "allocatable": capacity},
        }


GPU_NODES = (
    FakeNode("gpu-a-0", "gpu-a", gpus=4),
    FakeNode("gpu-a-1", "gpu-a", gpus=4),
    FakeNode("gpu-b-0", "gpu-b", gpus=8),
)
DEFAULT_NODES = (FakeNode("cpu-0", "cpu"), FakeNode("cpu-1", "cpu"), *GPU_NODES)
REAL_NODE = "node-0"
# What CoreDNS reads to answer for Services (the upstream system:coredns role).
COREDNS_RBAC = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "system:coredns"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["list", "watch"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "system:coredns"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:coredns",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}
        ],
    },
]


def kubeconfig(server: str, ca: Path, user: str, pair: KeyPair) -> dict[str, Any]:
    cluster = {"server": server, "certificate-authority": str(ca)}
    credentials = {"client-certificate": str(pair.cert), "client-key": str(pair.key)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }


@dataclass
class LocalCluster:
    workdir: Path
    kubeconfig: Path
    server: str
    binaries: Binaries
    processes: list[ManagedProcess] = field(default_factory=list)
    node: real.RealNode | None = None
    start_seconds: float = 0.0

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binaries["kubectl"], "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise ServiceError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Wait until a CRD serves. Not `kubectl wait`: on a busy machine it may read
        the CRD before it has any conditions and fail at once."""
        jsonpath = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            done = self.kubectl("get", f"crd/{crd}", "-o", jsonpath, check=False)
            return done.stdout.strip() == "True"

        wait_until(established, timeout=timeout, what=f"CRD {crd} established")

    def bind_static_volume(
        self,
        namespace: str,
        claim: str,
        *,
        host_path: Path | None = None,
        create_claim: bool = False,
    ) -> None:
        """A hostPath PersistentVolume reserved for ``claim``: for clusters without a
        storage provisioner (the local one). ``create_claim`` also makes the claim (for
        claims a user creates, such as one holding model files; a StatefulSet makes its
        own)."""
        pv_name = f"pv-{namespace}-{claim}"
        pv: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": str(host_path or f"/tmp/{namespace}-{claim}")},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
        items: list[dict[str, Any]] = [pv]
        if create_claim:
            pvc = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "volumeName": pv_name,
                    "resources": {"requests": {"storage": "10Gi"}},
                },
            }
            items.append(pvc)
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

    def api_ready(self) -> bool:
        return self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0

    def restart_apiserver(self, timeout: float = 60) -> float:
        """The API server killed (SIGKILL) and started again over the same etcd, as a
        crashed or upgraded control plane; returns the seconds until it was ready."""
        (apiserver,) = [p for p in self.processes if p.name == "kube-apiserver"]
        apiserver.restart()
        return apiserver.wait_ready(self.api_ready, timeout)

    def stop(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()
        if f"//{real.NODE_IP}:" in self.server:  # also when the node never started
            real.remove_node_address()


def start_cluster(
    workdir: Path,
    *,
    nodes: Sequence[FakeNode] = DEFAULT_NODES,
    binaries: Binaries | None = None,
    real_node: bool = False,
    images: Sequence[Path] = (),
    timeout: float = 120.0,
) -> LocalCluster:
    """Start everything, wait until the API answers and every node is Ready.

    ``real_node``: also a node that runs pods for real (see ``node``), in the CPU pool,
    with ``images`` (OCI archives) imported into its containerd. The API server then
    listens on the node's address (on the loopback interface) so pods can reach it."""
    started = time.monotonic()
    bins = binaries or Binaries.find()
    node_bins = real.NodeBinaries.find(bins.folder / "node") if real_node else None
    workdir.mkdir(parents=True, exist_ok=True)
    logs = workdir / "logs"
    pki = workdir / "pki"
    ca = LocalCA(pki)
    api_port = free_port()
    host = real.NODE_IP if real_node else "127.0.0.1"
    if real_node:
        if reason := real.unsupported_reason():
            raise ServiceError(reason)
        real.add_node_address()
    server = f"https://{host}:{api_port}"
    serving = ca.issue(
        "apiserver",
        "kube-apiserver",
        server_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        server_ips=("127.0.0.1", real.NODE_IP, "10.96.0.1"),
    )
    admin = ca.issue("admin", "admin", org="system:masters")
    kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver", org="system:masters")
    sa = service_account_keys(pki)
    configs = {}
    for user, cn, org in (
        ("admin", None, None),
        ("controller-manager", "system:kube-controller-manager", None),
        ("scheduler", "system:kube-scheduler", None),
        ("kubelet", f"system:node:{REAL_NODE}", "system:nodes"),
        ("kube-proxy", "system:kube-proxy", None),
        ("coredns", "system:coredns", None),
    ):
        pair = admin if cn is None else ca.issue(user, cn, org=org)
        path = workdir / f"{user}.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig(server, ca.cert_path, user, pair)))
        configs[user] = path

    cluster = LocalCluster(workdir, configs["admin"], server, bins)
    try:
        etcd_port, peer_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = ManagedProcess(
            "etcd",
            [
                bins["etcd"],
                "--name",
                "local",
                "--data-dir",
                str(workdir / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"local=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            logs / "etcd.log",
        )
        cluster.processes.append(etcd)
        etcd.wait_ready(lambda: http_ok(f"{etcd_url}/health"), timeout)

        issuer = "https://kubernetes.default.svc.cluster.local"
        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                bins["kube-apiserver"],
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                host,
                "--advertise-address",
                host,
                "--secure-port",
                str(api_port),
                "--kubelet-client-certificate",
                str(kubelet_client.cert),
                "--kubelet-client-key",
                str(kubelet_client.key),
                "--kubelet-preferred-address-types",
                "InternalIP",
                "--cert-dir",
                str(pki),
                "--tls-cert-file",
                str(serving.cert),
                "--tls-private-key-file",
                str(serving.key),
                "--client-ca-file",
                str(ca.cert_path),
                "--service-account-issuer",
                issuer,
                "--api-audiences",
                issuer,
                "--service-account-key-file",
                str(sa.cert),
                "--service-account-signing-key-file",
                str(sa.key),
                "--authorization-mode",
                "Node,RBAC",
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--allow-privileged=true",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
            ],
            logs / "kube-apiserver.log",
        )
        cluster.processes.append(apiserver)
        tls = ssl.create_default_context(cafile=str(ca.cert_path))
        tls.load_cert_chain(str(admin.cert), str(admin.key))
        apiserver.wait_ready(lambda: http_ok(f"{server}/readyz", verify=tls), timeout)

        kcm_port = free_port()
        kcm = ManagedProcess(
            "kube-controller-manager",
            [
                bins["kube-controller-manager"],
                "--kubeconfig",
                str(configs["controller-manager"]),
                "--authentication-kubeconfig",
                str(configs["controller-manager"]),
                "--authorization-kubeconfig",
                str(configs["controller-manager"]),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(kcm_port),
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                "--service-account-private-key-file",
                str(sa.key),
                "--root-ca-file",
                str(ca.cert_path),
                "--cluster-signing-cert-file",
                str(ca.cert_path),
                "--cluster-signing-key-file",
                str(ca.key_path),
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--profiling=false",
            ],
            logs / "kube-controller-manager.log",
        )
        cluster.processes.append(kcm)
        sched_port = free_port()
        scheduler = ManagedProcess(
            "kube-scheduler",
            [
                bins["kube-scheduler"],
                "--kubeconfig",
                str(configs["scheduler"]),
                "--authentication-kubeconfig",
                str(configs["scheduler"]),
                "--authorization-kubeconfig",
                str(configs["scheduler"]),
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(sched_port),
                "--leader-elect=false",
                "--profiling=false",
            ],
            logs / "kube-scheduler.log",
        )
        cluster.processes.append(scheduler)
        kwok = ManagedProcess(
            "kwok",
            [
                bins["kwok"],
                "--kubeconfig",
                str(configs["admin"]),
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--server-address",
                f"127.0.0.1:{free_port()}",
                "--node-lease-duration-seconds",
                "40",
            ],
            logs / "kwok.log",
        )
        cluster.processes.append(kwok)
        kcm.wait_ready(
            lambda: http_ok(f"https://127.0.0.1:{kcm_port}/healthz", verify=False), timeout
        )
        scheduler.wait_ready(
            lambda: http_ok(f"https://127.0.0.1:{sched_port}/healthz", verify=False), timeout
        )

        manifests = {"apiVersion": "v1", "kind": "List", "items": [n.manifest() for n in nodes]}
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifests))
        if node_bins is not None:
            rbac = {"apiVersion": "v1", "kind": "List", "items": COREDNS_RBAC}
            cluster.kubectl("apply", "-f", "-", input=json.dumps(rbac))
            cluster.node = real.start_node(
                name=REAL_NODE,
                workdir=workdir / "node",
                binaries=node_bins,
                kubeconfigs=configs,
                ca=ca.cert_path,
                labels={POOL_LABEL: "cpu", "type": "real"},
                images=images,
                timeout=timeout,
            )
        expected = len(nodes) + (1 if node_bins is not None else 0)
        wait_until(
            lambda: _all_nodes_ready(cluster, expected),
            timeout=timeout,
            what="nodes Ready",
            alive=kwok.exit_message,
        )

        # Pods need the namespace's default ServiceAccount, made by the controller manager.
        def has_default_sa() -> bool:
            done = cluster.kubectl("get", "serviceaccount", "default", check=False)
            return done.returncode == 0

        wait_until(
            has_default_sa, timeout=timeout, what="default ServiceAccount", alive=kcm.exit_message
        )
    except BaseException:
        cluster.stop()
        raise
    cluster.start_seconds = time.monotonic() - started
    return cluster


def _all_nodes_ready(cluster: LocalCluster, expected: int) -> bool:
    items = cluster.get_json("nodes")["items"]
    ready = [
        n
        for n in items
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
    ]
    return len(ready) >= expected


def main(argv: list[str] | None = None) -> int:
    """``up`` runs a cluster until Ctrl-C (``--detach``: in the background, returning once
    it is ready); ``down`` stops a detached one."""
    parser = argparse.ArgumentParser(prog="python -m iccache_dev.local.cluster")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"))
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    folder: Path = args.dir.resolve()
    pidfile = folder.with_suffix(".pid")
    log = folder.with_suffix(".log")
    if args.action == "down":
        if not pidfile.exists():
            print(f"no cluster is running from {folder}")
            return 0
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pidfile.unlink(missing_ok=True)
        print("stopping the cluster")
        wait_until(lambda: not pidfile.exists(), timeout=60, what="cluster shutdown")
        return 0
    if pidfile.exists():
        print(
            f"a cluster is already running from {folder} (pid {pidfile.read_text()}); "
            "stop it with `make cluster-down`",
            file=sys.stderr,
        )
        return 1
    if args.detach:
        with log.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "iccache_dev.local.cluster", "up", "--dir", str(folder)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(
            lambda: "cluster ready" in log.read_text(errors="replace"),
            timeout=300,
            what="local cluster",
            alive=lambda: None if child.poll() is None else log.read_text(),
        )
        print(log.read_text(), end="")
        return 0
    if folder.exists():
        shutil.rmtree(folder)
    cluster = start_cluster(folder)
    pidfile.write_text(str(os.getpid()))
    print(f"cluster ready in {cluster.start_seconds:.1f} s; API at {cluster.server}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"kubectl: {cluster.binaries['kubectl']}")
    print("stop it with: make cluster-down (or Ctrl-C when in the foreground)", flush=True)
    stop = False

    def on_signal(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop:
            signal.pause()
    finally:
        cluster.stop()
        pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
