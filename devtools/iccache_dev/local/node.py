"""A real worker node for the local control plane: containerd 2, runc, CNI, kubelet,
kube-proxy and CoreDNS on this machine, so the pods the operator creates really start.

Networking stays on this machine:

- the node's address (``NODE_IP``) sits on the loopback interface; the API server, the
  kubelet and CoreDNS listen only there or on 127.0.0.1;
- pods live in network namespaces that containerd creates, joined by the bridge
  ``BRIDGE`` (``POD_CIDR``); kube-proxy routes Service addresses to them in iptables;
- a filter chain drops anything a pod sends that would leave through another interface,
  and CoreDNS answers only for ``cluster.local`` (it forwards nowhere).

The binaries come from ``scripts/build-node-tools`` (Go module proxy, cached by version;
runc and the CNI plugins are Debian's). kwok's fake nodes can run beside it: the real
node is the CPU pool, the fake ones the GPU pools.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iccache_dev.local.assets import AssetNotFound, ToolFolder, cache_dir
from iccache_dev.local.process import ManagedProcess, ServiceError, free_port, http_ok

NODE_IP = "10.250.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"  # the API server's --service-cluster-ip-range
BRIDGE = "iccbr0"
CLUSTER_DOMAIN = "cluster.local"
FILTER_CHAIN = "ICCACHE-NODE"
CAP_SYS_RESOURCE = 24
NODE_TOOLS = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "crictl",
    "coredns",
    "pause",
)
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"
PAUSE_IMAGE = "localhost/iccache/pause:3.10"
# What the host needs that no Go module brings (Debian packages).
HOST_COMMANDS = {RUNC: "runc", f"{CNI_BIN}/bridge": "containernetworking-plugins"}


class NodeBinaries(ToolFolder):
    @classmethod
    def find(cls, folder: Path) -> NodeBinaries:
        missing = cls.missing(folder, NODE_TOOLS)
        missing += [
            f"{p} (Debian: {pkg})" for p, pkg in HOST_COMMANDS.items() if not Path(p).exists()
        ]
        if missing:
            raise AssetNotFound(
                f"{', '.join(missing)} missing; build them with `scripts/build-node-tools` "
                "(part of `make setup` when run as root)"
            )
        return cls(folder)


def unsupported_reason() -> str | None:
    """Why a real node cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a real node needs root (kubelet, containerd, network namespaces)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian: iproute2, iptables)"
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        return "no cgroup hierarchy with the memory controller"
    return None


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise ServiceError(f"{' '.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def add_node_address() -> None:
    """Put the node's address on the loopback interface (idempotent)."""
    if NODE_IP not in _sh("ip", "-o", "addr", "show", "dev", "lo").stdout:
        _sh("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")


def remove_node_address() -> None:
    _sh("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)


def _sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    if not path.exists() and key.startswith("net.bridge."):
        _sh("modprobe", "br_netfilter", check=False)
    path.write_text(value)


def _install_filter() -> None:
    """Pods may talk to each other, to Services and to the node; nothing they send may
    leave through any other interface."""
    _remove_filter()
    _sh("iptables", "-N", FILTER_CHAIN)
    _sh("iptables", "-A", FILTER_CHAIN, "-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP")
    _sh("iptables", "-A", FILTER_CHAIN, "-d", POD_CIDR, "!", "-i", BRIDGE, "-j", "DROP")
    _sh("iptables", "-I", "FORWARD", "1", "-j", FILTER_CHAIN)


def _remove_filter() -> None:
    while _sh("iptables", "-D", "FORWARD", "-j", FILTER_CHAIN, check=False).returncode == 0:
        pass
    _sh("iptables", "-F", FILTER_CHAIN, check=False)
    _sh("iptables", "-X", FILTER_CHAIN, check=False)


def cni_config(workdir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "iccache",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    # No default route: a pod reaches other pods, Services and the
                    # node, and has no way to any other address.
                    "routes": [{"dst": SERVICE_CIDR}, {"dst": f"{NODE_IP}/32"}],
                    "dataDir": str(workdir / "cni" / "ipam"),
                },
            },
            {"type": "loopback"},
        ],
    }


def can_lower_oom_score() -> bool:
    """Whether this process may set an OOM score below its own (CAP_SYS_RESOURCE)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) & (1 << CAP_SYS_RESOURCE))
    return False


def containerd_config(workdir: Path, root: Path, socket: Path, restrict_oom: bool) -> str:
    """containerd 2's configuration (version 3): CRI with runc on cgroupfs, our CNI
    folder, the local pause image, and nothing that listens on TCP."""
    cni_dir = workdir / "cni" / "net.d"
    return f"""version = 3
root = "{root}"
state = "{workdir / "containerd" / "state"}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  level = "warn"

[metrics]
  address = ""

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Even root lacks CAP_SYS_RESOURCE on some hosts (this one): an OOM score below
  # containerd's own cannot be set there, so sandboxes keep containerd's.
  restrict_oom_score_adj = {str(restrict_oom).lower()}
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN}"]
    conf_dir = "{cni_dir}"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def kubelet_config(
    workdir: Path, socket: Path, ca: Path, port: int, healthz_port: int, resolv: Path
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # This host has cgroup v1 (hybrid); Kubernetes 1.35+ refuses it unless told.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "containerRuntimeEndpoint": f"unix://{socket}",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [NODE_IP],
        "resolvConf": str(resolv),
        "podLogsDir": str(workdir / "pod-logs"),
        "failSwapOn": False,
        # A shared build machine's disk is often fuller than the defaults allow; the
        # imported images must never be collected either.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "registerNode": True,
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "localStorageCapacityIsolation": True,
        "protectKernelDefaults": False,
    }


def kube_proxy_config(kubeconfig: Path, healthz: int, metrics: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {"maxPerCore": 0},
    }


def corefile(kubeconfig: Path, health_port: int, ready_port: int) -> str:
    """Cluster names only: no forward plugin, so no query ever leaves the machine."""
    return f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health_port}
    ready 127.0.0.1:{ready_port}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
}}
"""


@dataclass
class RealNode:
    """A node that runs pods for real. ``stop()`` removes every pod, unmounts what the
    kubelet mounted and takes the network set-up back out."""

    name: str
    workdir: Path
    binaries: NodeBinaries
    socket: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    start_seconds: float = 0.0

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _sh(
            self.binaries["ctr"], "--address", str(self.socket), "-n", "k8s.io", *args, check=check
        )

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        endpoint = f"unix://{self.socket}"
        return _sh(
            self.binaries["crictl"],
            "--runtime-endpoint",
            endpoint,
            "--image-endpoint",
            endpoint,
            "--timeout",
            "60s",
            *args,
            check=check,
        )

    def import_images(self, archives: Iterable[Path]) -> None:
        """Load OCI archives into containerd's k8s.io namespace (pinned: the kubelet never
        collects them). No registry is involved; pods use the archives' tags."""
        for archive in archives:
            started = time.monotonic()
            self.ctr(
                "images",
                "import",
                "--label",
                "io.cri-containerd.pinned=pinned",
                str(archive),
            )
            print(
                f"[node] imported {archive.name} in {time.monotonic() - started:.1f} s", flush=True
            )

    def stop(self) -> None:
        by_name = {p.name: p for p in self.processes}
        for name in ("kube-proxy", "kubelet", "coredns"):
            if name in by_name:
                by_name[name].stop()
        if "containerd" in by_name and by_name["containerd"].proc.poll() is None:
            # Stops and removes every pod sandbox through CRI: containers die, CNI
            # tears down each pod's network namespace and gives its address back.
            self.crictl("rmp", "--all", "--force", check=False)
            by_name["containerd"].stop()
        self.processes.clear()
        _unmount_under(self.workdir)
        if "kube-proxy" in by_name:
            _sh(self.binaries["kube-proxy"], "--cleanup", check=False)
        for table in ("mangle", "nat", "filter"):  # the kubelet's own canary chains
            _sh("iptables", "-t", table, "-X", "KUBE-KUBELET-CANARY", check=False)
        _remove_filter()
        _sh("ip", "link", "del", BRIDGE, check=False)


def _unmount_under(folder: Path) -> None:
    prefix = str(folder.resolve())
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        _sh("umount", "-l", mount, check=False)


def start_node(
    *,
    name: str,
    workdir: Path,
    binaries: NodeBinaries,
    kubeconfigs: dict[str, Path],
    ca: Path,
    labels: dict[str, str],
    images: Sequence[Path] = (),
    timeout: float = 120.0,
) -> RealNode:
    """Start containerd, CoreDNS, the kubelet and kube-proxy; import ``images``; return once
    the node is registered (its Ready condition is the caller's to wait for).

    ``kubeconfigs`` holds ``kubelet`` (user system:node:NAME), ``kube-proxy`` (user
    system:kube-proxy) and ``coredns`` (a user allowed to list Services and
    EndpointSlices)."""
    started = time.monotonic()
    logs = workdir / "logs"
    for sub in ("cni/net.d", "cni/ipam", "containerd/state", "kubelet", "pod-logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "cni" / "net.d" / "10-iccache.conflist").write_text(json.dumps(cni_config(workdir)))
    socket = workdir / "containerd" / "containerd.sock"
    # Images stay between runs: a warm start only checks them.
    root = cache_dir() / "node" / "containerd"
    root.mkdir(parents=True, exist_ok=True)
    config = workdir / "containerd" / "config.toml"
    config.write_text(containerd_config(workdir, root, socket, not can_lower_oom_score()))
    node = RealNode(name, workdir, binaries, socket)
    try:
        add_node_address()
        _sysctl("net.ipv4.ip_forward", "1")
        _sysctl("net.bridge.bridge-nf-call-iptables", "1")
        _install_filter()
        path = f"{binaries.folder}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        containerd = ManagedProcess(
            "containerd",
            [binaries["containerd"], "--config", str(config)],
            logs / "containerd.log",
            env={"PATH": path},
        )
        node.processes.append(containerd)
        containerd.wait_ready(
            lambda: socket.exists() and node.ctr("version", check=False).returncode == 0, timeout
        )
        pause = binaries.folder / "pause.oci.tar"
        node.import_images([pause, *images])

        dns_ready = free_port()
        (workdir / "Corefile").write_text(corefile(kubeconfigs["coredns"], free_port(), dns_ready))
        coredns = ManagedProcess(
            "coredns",
            [binaries["coredns"], "-conf", str(workdir / "Corefile")],
            logs / "coredns.log",
        )
        node.processes.append(coredns)

        resolv = workdir / "resolv.conf"
        resolv.write_text(f"nameserver {NODE_IP}\n")
        healthz = free_port()
        kubelet_yaml = workdir / "kubelet.yaml"
        kubelet_yaml.write_text(
            yaml.safe_dump(kubelet_config(workdir, socket, ca, free_port(), healthz, resolv))
        )
        kubelet = ManagedProcess(
            "kubelet",
            [
                binaries["kubelet"],
                "--config",
                str(kubelet_yaml),
                "--kubeconfig",
                str(kubeconfigs["kubelet"]),
                "--root-dir",
                str(workdir / "kubelet"),
                "--hostname-override",
                name,
                "--node-ip",
                NODE_IP,
                "--node-labels",
                ",".join(f"{k}={v}" for k, v in labels.items()),
                "--v",
                "1",
            ],
            logs / "kubelet.log",
            env={"PATH": path},
        )
        node.processes.append(kubelet)
        proxy_yaml = workdir / "kube-proxy.yaml"
        proxy_yaml.write_text(
            yaml.safe_dump(kube_proxy_config(kubeconfigs["kube-proxy"], free_port(), free_port()))
        )
        proxy = ManagedProcess(
            "kube-proxy",
            [binaries["kube-proxy"], "--config", str(proxy_yaml), "--hostname-override", name],
            logs / "kube-proxy.log",
            env={"PATH": path},
        )
        node.processes.append(proxy)
        coredns.wait_ready(lambda: http_ok(f"http://127.0.0.1:{dns_ready}/ready"), timeout)
        kubelet.wait_ready(lambda: http_ok(f"http://127.0.0.1:{healthz}/healthz"), timeout)
    except BaseException:
        node.stop()
        raise
    node.start_seconds = time.monotonic() - started
    return node
