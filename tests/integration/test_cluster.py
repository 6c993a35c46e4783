"""The local control plane behaves like a cluster: scheduling to GPU pools, taints,
garbage collection, Helm, and a kubectl within one minor version of the server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from iccache_dev.local.cluster import GPU, POOL_LABEL, LocalCluster

CHART = Path(__file__).parent / "charts" / "hello"


def deployment(name: str, replicas: int, **pod_spec: Any) -> str:
    resources = pod_spec.pop("resources", {})
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "registry.invalid/model:1",
                                "resources": resources,
                            }
                        ],
                        **pod_spec,
                    },
                },
            },
        }
    )


def pods(cluster: LocalCluster, ns: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", ns, "-l", f"app={app}")["items"]
    return items


def pool_of(cluster: LocalCluster, node: str) -> str:
    return str(cluster.get_json("node", node)["metadata"]["labels"][POOL_LABEL])


def test_gpu_deployment_lands_on_its_pool_and_becomes_ready(
    k8s_cluster: LocalCluster, namespace: str
) -> None:
    manifest = deployment(
        "large-model",
        2,
        resources={"limits": {GPU: "1"}},
        nodeSelector={POOL_LABEL: "gpu-a"},
        tolerations=[{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
    )
    k8s_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    k8s_cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=condition=Available",
        "deployment/large-model",
        "--timeout=120s",
    )
    running = pods(k8s_cluster, namespace, "large-model")
    assert len(running) == 2
    for pod in running:
        assert pool_of(k8s_cluster, pod["spec"]["nodeName"]) == "gpu-a"
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True"


def test_without_the_toleration_nothing_lands_on_a_gpu_node(
    k8s_cluster: LocalCluster, namespace: str
) -> None:
    k8s_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("router", 4))
    k8s_cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/router", "--timeout=120s"
    )
    assert {
        pool_of(k8s_cluster, p["spec"]["nodeName"]) for p in pods(k8s_cluster, namespace, "router")
    } == {"cpu"}

    # Asking for a GPU without tolerating the taint: no node fits, the Pod stays Pending.
    greedy = deployment("greedy", 1, resources={"limits": {GPU: "1"}})
    k8s_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=greedy)
    scheduled_reason = '{.status.conditions[?(@.type=="PodScheduled")].reason}'
    k8s_cluster.kubectl(
        "wait",
        "-n",
        namespace,
        "pod",
        "-l",
        "app=greedy",
        "--timeout=120s",
        f"--for=jsonpath={scheduled_reason}=Unschedulable",
    )
    (pod,) = pods(k8s_cluster, namespace, "greedy")
    assert "nodeName" not in pod["spec"]
    assert pod["status"]["phase"] == "Pending"


def test_deleting_an_owner_deletes_what_it_owns(k8s_cluster: LocalCluster, namespace: str) -> None:
    k8s_cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = k8s_cluster.get_json("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    k8s_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(dependent))
    k8s_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("web", 2))
    k8s_cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/web", "--timeout=120s"
    )
    assert len(pods(k8s_cluster, namespace, "web")) == 2

    k8s_cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    k8s_cluster.kubectl("delete", "deployment", "web", "-n", namespace, "--cascade=background")
    k8s_cluster.kubectl(
        "wait", "-n", namespace, "--for=delete", "configmap/dependent", "--timeout=120s"
    )
    k8s_cluster.kubectl(
        "wait", "-n", namespace, "--for=delete", "pod", "-l", "app=web", "--timeout=120s"
    )
    assert pods(k8s_cluster, namespace, "web") == []


def test_helm_install_and_uninstall(k8s_cluster: LocalCluster, namespace: str) -> None:
    helm = [k8s_cluster.binaries["helm"], "--kubeconfig", str(k8s_cluster.kubeconfig)]
    helm += ["-n", namespace]

    def run(*args: str) -> str:
        done = subprocess.run([*helm, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("install", "demo", str(CHART), "--set", "greeting=hi", "--wait", "--timeout", "120s")
    data = k8s_cluster.get_json("configmap", "demo-greeting", "-n", namespace)["data"]
    assert data == {"greeting": "hi"}
    assert "demo" in run("list", "-q")
    run("uninstall", "demo", "--wait")
    left = k8s_cluster.kubectl("get", "configmap,deployment", "-n", namespace, "-o", "name")
    assert "demo-" not in left.stdout


def test_kubectl_and_server_are_within_one_minor_version(k8s_cluster: LocalCluster) -> None:
    versions = json.loads(k8s_cluster.kubectl("version", "-o", "json").stdout)
    client, server = versions["clientVersion"], versions["serverVersion"]
    assert server["gitVersion"] == "v1.36.3"
    assert abs(int(client["minor"].rstrip("+")) - int(server["minor"].rstrip("+"))) <= 1
