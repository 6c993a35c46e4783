"""The user's whole journey on a real node: kubelet, containerd, CNI, kube-proxy and
CoreDNS on this machine, every pod a real container from the project's images.

1. ``helm install`` with the local images: the operator runs as a pod under the chart's
   ServiceAccount and becomes Ready;
2. ``kubectl apply --server-side`` of the CPU sample with model sources (the large model
   downloaded from a URL by an init container, the small one read from a claim) and
   managed Redis: the resource is Ready and every child pod Running and Ready;
3. from a pod inside the cluster the official ``openai`` client asks the router's Service:
   a seeded question goes to the large model, its paraphrase to the small model with the
   stored example, and the routers' ``/metrics`` show the offload, as does
   ``status.quality``, which the operator sums from both routers' ``/quality``; a real
   Prometheus finds both routers as the chart's ServiceMonitor says, counts what the
   test sent, and every panel of the shipped dashboard returns data;
4. a Job made from the replay CronJob completes and ``status.replay.lastResult`` shows it;
5. a deleted router pod is replaced and requests succeed again; a deleted Redis pod is
   restarted by its StatefulSet with the stored examples still there;
6. ``kubectl diff --server-side`` of the applied sample shows no drift;
7. deleting the InContextCache removes every child; ``helm uninstall`` leaves nothing.

The steps run in order on one cluster; a failed step skips the ones after it. Each
prints its time; the table is printed at the end.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import CHART, SUMMARY, Helm

from iccache_dev.local import assets
from iccache_dev.local import node as real
from iccache_dev.local.cluster import GPU_NODES, K8S_VERSION, LocalCluster, start_cluster
from iccache_dev.local.fileserver import FileServer
from iccache_dev.local.images import build, missing_tools
from iccache_dev.local.process import wait_until
from iccache_dev.local.prometheus import panel_queries, service_monitor_job, start_prometheus
from iccache_operator.crd import CRD_FILE
from iccache_sidecar.fetch import file_sha256

SAMPLE = CRD_FILE.parent / "samples" / "cpu-llamacpp.yaml"
RELEASE = "icc"
NAMESPACE = "journey"
SYSTEM = "iccache-system"
INSTANCE = "app.kubernetes.io/instance=demo"
SMALL, LARGE = assets.SMOLLM2_135M, assets.GEMMA3_270M
QUESTION = "What is the capital city of Australia?"
PARAPHRASE = "Which city is the capital of Australia?"
LARGE_NAME = "gemma-3-270m"  # the large model's served name in the test's spec

# Runs in a pod (the data-plane image has the openai client): asks the router's Service,
# waits for the example to reach the cache, reads each router's /metrics. One JSON line.
CLIENT = r"""
import json, sys, time, httpx
from openai import OpenAI
base, large, mode, routers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
oa = OpenAI(base_url=base + "/v1", api_key="unused", max_retries=3, timeout=120)
def ask(model, text):
    r = oa.chat.completions.create(model=model, max_tokens=12,
                                   messages=[{"role": "user", "content": text}])
    meta = (r.model_extra or {}).get("iccache", {})
    return {"route": meta.get("route"), "examples": len(meta.get("examples") or []),
            "answer": r.choices[0].message.content}
def examples(ip):
    text = httpx.get(f"http://{ip}:8080/metrics", timeout=10).text
    line = [l for l in text.splitlines() if l.startswith("iccache_cache_examples ")]
    return float(line[0].split()[1]) if line else 0.0
out = {}
if mode == "seed":
    out["seed"] = ask(large, QUESTION)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(examples(ip) >= 1 for ip in routers):
        time.sleep(1)
    out["stored"] = [examples(ip) for ip in routers]
out["paraphrase"] = ask("iccache", PARAPHRASE)
out["metrics"] = {ip: [l for l in httpx.get(f"http://{ip}:8080/metrics", timeout=10)
                       .text.splitlines() if l.startswith("iccache_requests_total")]
                  for ip in routers}
# The pod's routes: the pod network, Services and the node, no default route.
out["routes"] = [l.split()[1] for l in open("/proc/net/route").read().splitlines()[1:]]
print(json.dumps(out))
"""


@dataclass
class Journey:
    cluster: LocalCluster
    helm: Helm
    workdir: Path
    images: dict[str, str]
    times: dict[str, float] = field(default_factory=dict)
    failed: str | None = None
    applied: Path | None = None
    servers: list[FileServer] = field(default_factory=list)

    def kubectl(self, *args: str, **kw: Any) -> Any:
        return self.cluster.kubectl(*args, **kw)

    def pods(self, selector: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.cluster.get_json(
            "pods", "-n", namespace, "-l", selector
        )["items"]
        return items

    def wait_ready_pods(self, selector: str, count: int, namespace: str = NAMESPACE) -> None:
        def ready() -> bool:
            pods = [p for p in self.pods(selector, namespace) if _ready(p)]
            return len(pods) >= count

        wait_until(ready, timeout=300, interval=1, what=f"{count} Ready pod(s) {selector}")

    def client(self, name: str, mode: str) -> dict[str, Any]:
        """Run the openai client in a pod and return what it printed."""
        routers = [
            p["status"]["podIP"]
            for p in self.pods(f"{INSTANCE},app.kubernetes.io/component=router")
            if _ready(p)
        ]
        script = CLIENT.replace("QUESTION", repr(QUESTION)).replace("PARAPHRASE", repr(PARAPHRASE))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"e2e": "client"}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
                "containers": [
                    {
                        "name": "client",
                        "image": self.images["sidecar"],
                        "command": ["python", "-c", script],
                        "args": [
                            f"http://demo-router.{NAMESPACE}.svc.cluster.local:8080",
                            LARGE_NAME,
                            mode,
                            *routers,
                        ],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True,
                        },
                    }
                ],
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(pod))
        phase = "{.status.phase}"
        wait_until(
            lambda: (
                self.kubectl("get", "pod", name, "-n", NAMESPACE, "-o", f"jsonpath={phase}").stdout
                in ("Succeeded", "Failed")
            ),
            timeout=300,
            interval=1,
            what=f"client pod {name}",
        )
        logs = self.kubectl("logs", name, "-n", NAMESPACE).stdout
        status = self.kubectl("get", "pod", name, "-n", NAMESPACE, "-o", f"jsonpath={phase}").stdout
        assert status == "Succeeded", logs
        result: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
        return result


def _ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def journey(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Journey]:
    if reason := real.unsupported_reason():
        pytest.skip(reason)
    if absent := missing_tools():
        pytest.skip(f"the image builder cannot run here: {', '.join(absent)} not found")
    started = time.monotonic()
    built = {b.name: b for b in build(quiet=True)}  # seconds when nothing changed
    archives = [b.archive for b in built.values() if b.archive is not None]
    images_seconds = time.monotonic() - started
    workdir = tmp_path_factory.mktemp("real-node")
    cluster = start_cluster(workdir / "cluster", nodes=GPU_NODES, real_node=True, images=archives)
    j = Journey(cluster, Helm(cluster), workdir, {n: b.ref for n, b in built.items()})
    j.times["images (build check + export)"] = images_seconds
    j.times["cluster + real node + image import"] = cluster.start_seconds
    try:
        yield j
    finally:
        try:
            if j.failed:
                _dump(j)
        finally:
            cluster.stop()
            for server in j.servers:
                server.close()
            width = max(len(k) for k in j.times)
            lines = [f"{k:<{width}} {v:7.1f} s" for k, v in j.times.items()]
            request.config.stash[SUMMARY] = ("real-node journey, time per step", lines)


def _dump(j: Journey) -> None:
    """What a failed step leaves for the reader: pods, events, the operator's log."""
    for ns in (NAMESPACE, SYSTEM):
        for what in (("get", "pods", "-o", "wide"), ("get", "events", "--sort-by=.lastTimestamp")):
            done = j.kubectl(*what, "-n", ns, check=False)
            print(
                f"--- kubectl {' '.join(what)} -n {ns}\n{done.stdout}{done.stderr}",
                file=sys.__stderr__,
            )
    done = j.kubectl(
        "logs",
        "-n",
        SYSTEM,
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "--tail=80",
        check=False,
    )
    print(f"--- operator log\n{done.stdout}{done.stderr}", file=sys.__stderr__)


@pytest.fixture
def step(journey: Journey, request: pytest.FixtureRequest) -> Iterator[Journey]:
    """One step of the journey: skipped after a failed one, timed."""
    if journey.failed:
        pytest.skip(f"an earlier step failed: {journey.failed}")
    started = time.monotonic()
    name = request.node.name.removeprefix("test_")
    yield journey
    journey.times[name] = time.monotonic() - started
    report = getattr(request.node, "report_call", None)  # set by e2e/conftest.py
    if report is None or report.failed:
        journey.failed = name


def test_1_helm_install_runs_the_operator_pod(step: Journey) -> None:
    repo, tag = step.images["operator"].rsplit(":", 1)
    step.kubectl("create", "namespace", SYSTEM)
    step.kubectl("create", "namespace", NAMESPACE)  # the chart's Role goes there
    step.helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        SYSTEM,
        "--set",
        f"image.repository={repo}",
        "--set",
        f"image.tag={tag}",
        "--set",
        f"sidecarImage.repository={step.images['sidecar'].rsplit(':', 1)[0]}",
        "--set",
        f"watchNamespaces={{{NAMESPACE}}}",
        "--wait",
        "--timeout=5m",
    )
    (pod,) = step.pods(f"app.kubernetes.io/instance={RELEASE}", SYSTEM)
    assert _ready(pod)
    assert pod["spec"]["nodeName"] == "node-0"  # a real container, not a kwok fake
    assert pod["spec"]["serviceAccountName"] == f"{RELEASE}-iccache"
    (status,) = pod["status"]["containerStatuses"]
    assert status["containerID"].startswith("containerd://")
    assert status["imageID"]


def test_1b_host_processes_listen_only_on_loopback(step: Journey) -> None:
    """Every socket the cluster's and the node's processes listen on is on the loopback
    interface: 127.0.0.1 or the node's address (which sits on lo)."""
    ours = {p.proc.pid for p in step.cluster.processes}
    assert step.cluster.node is not None
    ours |= {p.proc.pid for p in step.cluster.node.processes}
    listening = subprocess.run(
        ["ss", "-Htlnup"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    mine = [line for line in listening if any(f"pid={pid}," in line for pid in ours)]
    assert len(mine) >= 8, listening  # etcd, apiserver, controllers, kubelet, CoreDNS, ...
    allowed = ("127.0.0.1:", f"{real.NODE_IP}:")
    wrong = [line for line in mine if not line.split()[4].startswith(allowed)]
    assert wrong == [], wrong


def test_2_sample_with_model_sources_becomes_ready(step: Journey) -> None:
    # The large model is downloaded by its pod from a server on this machine.
    store = step.workdir / "store"
    store.mkdir()
    large_file = store / LARGE.path().name
    shutil.copy(LARGE.path(), large_file)
    # Served on the node's address (on the loopback interface): pods reach it by their
    # route to the node, as they would reach a user's model mirror.
    server = FileServer(store, host=real.NODE_IP)
    step.servers.append(server)
    # The small model is in a claim (a hostPath volume of this machine).
    step.cluster.bind_static_volume(
        NAMESPACE, "models", host_path=SMALL.path().parent, create_claim=True
    )
    data = step.workdir / "redis-data"
    data.mkdir()
    os.chown(data, 999, 999)  # the Redis image's user; hostPath volumes keep their owner
    step.cluster.bind_static_volume(NAMESPACE, "data-demo-redis-0", host_path=data)

    doc = yaml.safe_load(SAMPLE.read_text())
    spec = doc["spec"]
    llama = step.images["llama-server"]
    spec["models"]["small"] |= {
        "image": llama,
        "source": {"pvc": {"claimName": "models", "path": SMALL.path().name}},
        # Two cores for everything: small requests so that every pod fits the node.
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }
    spec["models"]["large"] |= {
        "image": llama,
        "model": LARGE_NAME,
        "source": {"url": f"{server.url}/{large_file.name}", "sha256": file_sha256(large_file)},
        "args": ["--chat-template", "gemma"],  # the file carries none
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}},
    }
    spec["cache"]["managed"]["image"] = step.images["redis"]
    # Gemma 3 270M is a base model: its 12-token answers are cut, and kept only so.
    spec["cache"]["storeCut"] = True
    spec.setdefault("router", {})["decisionDetails"] = "full"  # the test reads the decision
    # A budget, shown in status.quality; it may offload before it is shown to hold
    # (unprovenShare 1), or the paraphrase below would mostly be held to the large model.
    spec.setdefault("routing", {})["quality"] = {"maxLoss": 0.05, "unprovenShare": 1.0}
    applied = step.workdir / "demo.yaml"
    applied.write_text(yaml.safe_dump(doc))
    step.applied = applied
    step.kubectl(
        "apply", "--server-side", "--field-manager=e2e", "-n", NAMESPACE, "-f", str(applied)
    )
    step.kubectl(
        "wait", "-n", NAMESPACE, "--for=condition=Ready", "icc/demo", "--timeout=300s", timeout=320
    )
    pods = step.pods(INSTANCE)
    components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods)
    assert components == ["model-large", "model-small", "redis", "router", "router"], components
    for pod in pods:
        assert pod["status"]["phase"] == "Running", pod["metadata"]["name"]
        assert _ready(pod), pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == "node-0"
    # The init container fetched the file once and checked it.
    (large,) = step.pods(f"{INSTANCE},app.kubernetes.io/component=model-large")
    (init,) = large["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0
    assert server.requests == [f"/{large_file.name}"]
    log = step.kubectl(
        "logs", "-n", NAMESPACE, large["metadata"]["name"], "-c", "fetch-model"
    ).stdout
    assert "downloaded and checked" in log


def test_3_openai_client_in_a_pod_is_served_small_with_examples(step: Journey) -> None:
    out = step.client("client-1", "seed")
    assert out["seed"]["route"] == "large", out
    assert out["seed"]["answer"]
    assert all(n >= 1 for n in out["stored"]), out  # every router sees the stored example
    assert out["paraphrase"]["route"] == "small", out
    assert out["paraphrase"]["examples"] >= 1, out
    assert out["paraphrase"]["answer"]
    assert "00000000" not in out["routes"], out["routes"]  # no default route out of the pod
    served_small = [
        line for lines in out["metrics"].values() for line in lines if 'route="small"' in line
    ]
    assert any(float(line.split()[-1]) >= 1 for line in served_small), out["metrics"]


def test_3b_status_quality_sums_what_both_routers_report(step: Journey) -> None:
    """The operator reads every router pod's /quality: the seed went large and the
    paraphrase small, so the summed offload is strictly between 0 and 1; no shadow
    comparison ran, so the 5% budget is not shown to hold."""

    def quality() -> dict[str, Any]:
        found: dict[str, Any] = step.cluster.get_json("icc", "demo", "-n", NAMESPACE)
        return dict((found.get("status") or {}).get("quality") or {})

    def reported() -> bool:
        q = quality()
        answered = sum(s["offloadRatio"] > 0 for s in q.get("scopes", []))
        return q.get("routersReporting") == 2 and answered > 0

    wait_until(reported, timeout=90, interval=2, what="status.quality from both routers")
    q = quality()
    assert q["routers"] == 2
    (overall,) = [s for s in q["scopes"] if s["scope"] == "*"]
    assert 0 < overall["offloadRatio"] < 1, q
    assert (overall["maxLoss"], overall["samples"], overall["holds"]) == (0.05, 0, False), q


def test_3c_a_prometheus_scrapes_the_routers_and_every_dashboard_panel_has_data(
    step: Journey,
) -> None:
    """A real Prometheus finds the routers through Kubernetes service discovery, as
    prometheus-operator would for the chart's ServiceMonitor (rendered here, since this
    cluster has no prometheus-operator), and scrapes both; after a request it counts
    what the test sent (one large answer, then two small ones; one small since it
    began) and every panel of the shipped Grafana dashboard returns data (a number, not
    only NaN)."""
    monitor = yaml.safe_load(
        step.helm(
            "template",
            RELEASE,
            str(CHART),
            "-n",
            SYSTEM,
            "--set",
            f"watchNamespaces={{{NAMESPACE}}}",
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--kube-version",
            K8S_VERSION,
            "--show-only",
            "templates/servicemonitor.yaml",
        ).stdout
    )
    jobs = service_monitor_job(monitor, step.cluster.kubeconfig, scrape_interval="1s")
    binary = Path(step.cluster.binaries["prometheus"])
    prom = start_prometheus(binary, step.workdir / "prometheus", jobs)
    try:

        def both_up() -> bool:
            return sum(t["health"] == "up" for t in prom.active_targets()) == 2

        wait_until(both_up, timeout=120, interval=1, what="Prometheus scraping both routers")
        out = step.client("client-prometheus", "ask")
        assert out["paraphrase"]["route"] == "small", out
        own: dict[str, float] = {}  # what the routers' /metrics said at the client's end
        for line in (line for lines in out["metrics"].values() for line in lines):
            route = line.split('route="', 1)[1].split('"', 1)[0]
            own[route] = own.get(route, 0.0) + float(line.split()[-1])
        assert own == {"large": 1.0, "small": 2.0, "exact": 0.0}, out["metrics"]
        routers = f'namespace="{NAMESPACE}", service="demo-router"'

        def scraped() -> dict[str, float]:
            found = prom.query(f"sum by (route) (iccache_requests_total{{{routers}}})")
            return {r["metric"]["route"]: float(r["value"][1]) for r in found}

        wait_until(lambda: scraped() == own, timeout=60, interval=1, what="the counts scraped")
        # Since Prometheus began: this client's one small answer, no large one (the
        # series existed at 0 before it, so the increase is seen).
        since = prom.query(f"sum by (route) (increase(iccache_requests_total{{{routers}}}[5m]))")
        increase = {r["metric"]["route"]: round(float(r["value"][1])) for r in since}
        assert (increase.get("small"), increase.get("large")) == (1, 0), since
        (examples,) = prom.query(f"max(iccache_cache_examples{{{routers}}})")
        assert float(examples["value"][1]) == 1.0  # the seed's answer
        dashboard = json.loads((CHART / "dashboards" / "iccache.json").read_text())
        empty, lines = [], []
        for title, exprs in panel_queries(dashboard, {"namespace": NAMESPACE, "cache": "demo"}):
            values = [float(r["value"][1]) for expr in exprs for r in prom.query(expr)]
            shown = ", ".join(f"{v:.3g}" for v in values[:8])
            lines.append(f"{title}: {shown or 'NO DATA'}")
            if all(math.isnan(v) for v in values):  # none, or only NaN (no rate to divide)
                empty.append(title)
        print("\n".join(["dashboard panels on real data:", *lines]))
        assert empty == [], lines
    finally:
        prom.stop()


def test_4_replay_job_completes_and_status_shows_it(step: Journey) -> None:
    step.kubectl("create", "job", "--from=cronjob/demo-replay", "replay-now", "-n", NAMESPACE)
    step.kubectl(
        "wait",
        "-n",
        NAMESPACE,
        "--for=condition=Complete",
        "job/replay-now",
        "--timeout=300s",
        timeout=320,
    )
    result = "{.status.replay.lastResult}"

    def reported() -> bool:
        out = step.kubectl("get", "icc", "demo", "-n", NAMESPACE, "-o", f"jsonpath={result}").stdout
        return "completed" in out or "stopped" in out

    wait_until(reported, timeout=120, interval=2, what="status.replay.lastResult")


def test_5_deleted_router_and_redis_pods_come_back_with_the_examples(step: Journey) -> None:
    routers = f"{INSTANCE},app.kubernetes.io/component=router"
    victim = step.pods(routers)[0]["metadata"]["name"]
    step.kubectl("delete", "pod", victim, "-n", NAMESPACE, "--wait=true", timeout=120)
    step.wait_ready_pods(routers, 2)
    assert victim not in [p["metadata"]["name"] for p in step.pods(routers)]
    assert step.client("client-2", "ask")["paraphrase"]["answer"]

    redis_pods = f"{INSTANCE},app.kubernetes.io/component=redis"
    (old,) = step.pods(redis_pods)
    step.kubectl(
        "delete", "pod", old["metadata"]["name"], "-n", NAMESPACE, "--wait=true", timeout=120
    )
    wait_until(
        lambda: any(
            _ready(p) and p["metadata"]["uid"] != old["metadata"]["uid"]
            for p in step.pods(redis_pods)
        ),
        timeout=300,
        interval=1,
        what="Redis restarted by its StatefulSet",
    )

    # The example stored before the restart is still what the paraphrase is served with.
    def served_with_examples() -> bool:
        out = step.client(f"client-3-{int(time.monotonic() * 1000) % 100000}", "ask")
        return out["paraphrase"]["route"] == "small" and out["paraphrase"]["examples"] >= 1

    wait_until(served_with_examples, timeout=120, interval=3, what="examples after Redis restarted")


def test_6_server_side_diff_shows_no_drift(step: Journey) -> None:
    assert step.applied is not None
    done = step.kubectl(
        "diff",
        "--server-side",
        "--field-manager=e2e",
        "-n",
        NAMESPACE,
        "-f",
        str(step.applied),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_7_delete_removes_every_child_and_uninstall_leaves_nothing(step: Journey) -> None:
    step.kubectl("delete", "pods", "-n", NAMESPACE, "-l", "e2e=client", "--wait=true")
    step.kubectl("delete", "icc", "demo", "-n", NAMESPACE, "--timeout=120s", timeout=150)
    kinds = "deployments,statefulsets,services,configmaps,cronjobs,jobs,pods"
    kinds += ",networkpolicies,serviceaccounts,secrets"

    def children_gone() -> bool:
        out = step.kubectl("get", kinds, "-n", NAMESPACE, "-l", INSTANCE, "-o", "name").stdout
        return out.strip() == ""

    wait_until(children_gone, timeout=180, interval=2, what="every child of demo removed")
    step.helm("uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout=3m")
    release = f"app.kubernetes.io/instance={RELEASE}"
    namespaced = "all,serviceaccounts,configmaps,secrets,roles,rolebindings"

    def left() -> str:
        inside = step.kubectl("get", namespaced, "-n", SYSTEM, "-l", release, "-o", "name")
        outside = step.kubectl(
            "get", "clusterroles,clusterrolebindings", "-l", release, "-o", "name"
        )
        return (inside.stdout + outside.stdout).strip()

    # The operator's pod goes when the garbage collector has removed its ReplicaSet and
    # the pod's grace period ended, after helm's own wait.
    wait_until(lambda: left() == "", timeout=120, interval=2, what="the release's objects gone")
    # Nothing runs on the node any more but what the test itself started.
    wait_until(
        lambda: (
            not [
                p
                for p in step.cluster.get_json("pods", "-A")["items"]
                if p["spec"].get("nodeName") == "node-0"
            ]
        ),
        timeout=120,
        interval=2,
        what="no pods left on the node",
    )
