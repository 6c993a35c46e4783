"""A whole install: helm install, the operator running with exactly the chart's RBAC (the
token of the chart's ServiceAccount), a sample reconciled to Ready, helm upgrade, the
data plane started from the settings the operator rendered and answering OpenAI
requests, and helm uninstall leaving nothing behind.

The operator runs as a local process, not in the chart's pod: the local control plane's
nodes are kwok's fakes, which run no containers. With ICCACHE_E2E_KUBECONFIG pointing at
a real cluster the chart's pod is scaled to zero so that only one operator reconciles.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from e2e_support import CHART, Helm

from iccache_contract.settings import RouterSettings
from iccache_dev.local import assets
from iccache_dev.local.cluster import LocalCluster
from iccache_dev.local.llamacpp import start_llm
from iccache_dev.local.operator import start_operator
from iccache_dev.local.process import ManagedProcess, free_port, wait_until
from iccache_dev.local.redis import start_redis
from iccache_operator.crd import CRD_FILE

RELEASE = "icc"
SAMPLE = CRD_FILE.parent / "samples" / "cpu-llamacpp.yaml"


def token_kubeconfig(cluster: LocalCluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a TokenRequest token)."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sa",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def as_operator(cluster: LocalCluster, config: Path, *args: str) -> Any:
    return cluster.kubectl("--kubeconfig", str(config), *args, check=False)


def operator_process(deployment: dict[str, Any], config: Path, log: Path) -> ManagedProcess:
    """Run what the chart's Deployment runs (its args and env) as a local process, with
    the ServiceAccount's kubeconfig and the liveness endpoint on a free local port."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a for a in container["args"] if not a.startswith("--liveness")]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return start_operator(args, config, log, env)


def bind_volume_if_needed(cluster: LocalCluster, namespace: str, claim: str) -> None:
    """Clusters without a default StorageClass (the local one) get a static volume."""
    classes = cluster.get_json("storageclass")["items"]
    default = "storageclass.kubernetes.io/is-default-class"
    if any(c["metadata"].get("annotations", {}).get(default) == "true" for c in classes):
        return
    cluster.bind_static_volume(namespace, claim)


@pytest.fixture
def installed(
    cluster: LocalCluster, helm: Helm, new_namespace: Callable[..., str]
) -> Iterator[tuple[str, str]]:
    """The chart installed namespaced: the operator lives in one namespace and watches
    another. Uninstalled at the end if a test has not done it already."""
    release_ns, watched = new_namespace(), new_namespace()
    values = ["--set", "scope=namespaced", "--set", f"watchNamespaces={{{watched}}}"]
    if os.environ.get("ICCACHE_E2E_KUBECONFIG"):
        values += ["--set", "operator.replicas=0"]
    helm("install", RELEASE, str(CHART), "-n", release_ns, *values, "--wait", "--timeout=3m")
    try:
        yield release_ns, watched
    finally:
        helm("uninstall", RELEASE, "-n", release_ns, "--wait", check=False)


SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=iccache-operator"


def chart_objects(cluster: LocalCluster, namespaces: list[str]) -> list[str]:
    """Every object of the release still present (namespaced kinds in the given
    namespaces, cluster-scoped RBAC anywhere)."""
    kinds = "deployments,services,serviceaccounts,configmaps,roles,rolebindings,pods"
    found = []
    for ns in namespaces:
        out = cluster.kubectl("get", kinds, "-n", ns, "-l", SELECTOR, "-o", "name").stdout
        found += out.split()
    out = cluster.kubectl(
        "get", "clusterroles,clusterrolebindings", "-l", SELECTOR, "-o", "name"
    ).stdout
    return found + out.split()


def test_install_reconcile_upgrade_serve_uninstall(
    cluster: LocalCluster,
    helm: Helm,
    installed: tuple[str, str],
    tmp_path: Path,
) -> None:
    release_ns, watched = installed
    k = cluster
    deployment = k.get_json("deployment", f"{RELEASE}-iccache", "-n", release_ns)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    sa_config = token_kubeconfig(k, release_ns, account, tmp_path / "operator.kubeconfig")

    # RBAC: what the operator needs is allowed, the rest is refused.
    def can(*args: str) -> bool:
        return bool(as_operator(k, sa_config, "auth", "can-i", *args).stdout.strip() == "yes")

    assert can("patch", "incontextcaches.iccache.dev/status", "-n", watched)
    assert can("create", "deployments.apps", "-n", watched)
    assert can("delete", "deployments.apps", "-n", watched)  # to prune what is unplanned
    assert not can("delete", "secrets", "-n", watched)  # data is never pruned
    assert not can("delete", "persistentvolumeclaims", "-n", watched)
    assert not can("delete", "deployments.apps", "-n", release_ns)  # not watched
    assert not can("list", "secrets", "-n", watched)
    assert not can("get", "incontextcaches.iccache.dev", "-n", release_ns)  # not watched
    k.kubectl(
        "create", "secret", "generic", "elsewhere", "-n", release_ns, "--from-literal=token=s3cret"
    )
    denied = as_operator(k, sa_config, "get", "secret", "elsewhere", "-n", release_ns)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    # The operator, with exactly that RBAC, reconciles the CPU sample to Ready.
    log = tmp_path / "operator.log"
    with operator_process(deployment, sa_config, log):
        bind_volume_if_needed(k, watched, "data-demo-redis-0")
        k.bind_static_volume(watched, "models", create_claim=True)  # the sample's weights
        sample = yaml.safe_load(SAMPLE.read_text())
        # The data plane below answers with Gemma 3 270M, a base model whose 16-token
        # answers are cut: kept only so.
        sample["spec"]["cache"]["storeCut"] = True
        k.kubectl("apply", "-n", watched, "-f", "-", input=yaml.safe_dump(sample))
        k.kubectl("wait", "-n", watched, "--for=condition=Ready", "icc/demo", "--timeout=180s")
        rendered = k.get_json("configmap", "demo-router-config", "-n", watched)
        secret = k.get_json("secret", "demo-redis-auth", "-n", watched)

    # helm upgrade with changed values: the operator's Deployment follows.
    helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        release_ns,
        "--reuse-values",
        "--set",
        "sidecarImage.tag=0.1.1",
        "--set",
        "operator.logLevel=debug",
        "--wait",
        "--timeout=3m",
    )
    upgraded = k.get_json("deployment", f"{RELEASE}-iccache", "-n", release_ns)
    container = upgraded["spec"]["template"]["spec"]["containers"][0]
    assert "--verbose" in container["args"]
    assert {"name": "ICCACHE_SIDECAR_IMAGE", "value": "ghcr.io/iccache/sidecar:0.1.1"} in (
        container["env"]
    )
    assert f"--namespace={watched}" in container["args"]

    # The upgraded operator takes over; meanwhile the data plane, started locally from
    # the operator's rendered settings, answers OpenAI requests.
    upgraded_log = tmp_path / "operator-upgraded.log"
    with operator_process(upgraded, sa_config, upgraded_log):
        password = base64.b64decode(secret["data"]["password"]).decode()
        answers = serve_from_rendered(rendered["data"]["router.yaml"], password, tmp_path)
        assert all(a.strip() for a in answers)
        # Deleting the resource goes through the operator (kopf's finalizer).
        deleted = k.kubectl(
            "delete", "icc", "demo", "-n", watched, "--wait=true", "--timeout=60s", check=False
        )
        assert deleted.returncode == 0, (deleted.stderr, upgraded_log.read_text()[-4000:])
    for path in (log, upgraded_log):
        text = path.read_text()
        assert "Forbidden" not in text, text[-3000:]
        assert " 403" not in text, text[-3000:]
        assert "Not enough permissions" not in text, text[-3000:]

    # Uninstall: nothing of the release is left; the CRD stays (Helm keeps crds/).
    helm("uninstall", RELEASE, "-n", release_ns, "--wait")
    # helm waits for the objects it deleted; their Pods go afterwards, by the GC.
    k.kubectl("wait", "--for=delete", "pod", "-l", SELECTOR, "-n", release_ns, "--timeout=120s")
    assert chart_objects(k, [release_ns, watched]) == []
    assert helm("list", "-n", release_ns, "-q").stdout.strip() == ""
    k.kubectl("get", "crd", "incontextcaches.iccache.dev")


def serve_from_rendered(settings_yaml: str, password: str, workdir: Path) -> list[str]:
    """Redis (with the Secret's password), two llama.cpp servers and `iccache serve`
    reading the operator's file, in which only the network addresses are changed to the
    local processes. Returns the answers to two OpenAI chat requests."""
    doc = yaml.safe_load(settings_yaml)
    settings = RouterSettings.model_validate(doc)  # what the operator wrote is readable
    assert settings.redis.password_env == "REDIS_PASSWORD"
    cache = start_redis(workdir / "redis", password=password)
    with cache.process:
        port = cache.port
        small = start_llm(assets.SMOLLM2_135M.path(), "small", workdir, n_threads=1)
        large = start_llm(
            assets.GEMMA3_270M.path(), "large", workdir, n_threads=1, chat_format="gemma"
        )
        with small.process, large.process:
            doc["small"]["base_url"] = small.base_url
            doc["large"]["base_url"] = large.base_url
            doc["redis"]["url"] = f"redis://127.0.0.1:{port}"
            http_port = free_port()
            doc["server"].update(host="127.0.0.1", http_port=http_port, grpc_port=free_port())
            config = workdir / "router.yaml"
            config.write_text(yaml.safe_dump(doc))
            router = ManagedProcess(
                "router",
                [sys.executable, "-m", "iccache_sidecar.cli", "serve", "--config", str(config)],
                workdir / "router.log",
                env={"REDIS_PASSWORD": password, "HF_HUB_OFFLINE": "1"},
            )
            base = f"http://127.0.0.1:{http_port}"

            def ready() -> bool:
                try:
                    return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            with router:
                router.wait_ready(ready, timeout=120)
                answers = []
                # The first question goes to the large model (forced: a fresh bandit may
                # explore the small one, whose answers are not stored), the second is routed.
                for question, force in (
                    ("What is the capital of France?", {"force_model": "large"}),
                    ("What is the capital city of France?", {}),
                ):
                    r = httpx.post(
                        f"{base}/v1/chat/completions",
                        timeout=120,
                        json={
                            "model": "iccache",
                            "max_tokens": 16,
                            "messages": [{"role": "user", "content": question}],
                            "iccache": force,
                        },
                    )
                    assert r.status_code == 200, r.text
                    answers.append(r.json()["choices"][0]["message"]["content"])
                # The router used the index and key prefix the operator chose, with the
                # password from the operator's Secret.
                client = redis.Redis(port=port, password=password)
                index = client.ft(settings.redis.index_name)
                wait_until(
                    lambda: int(index.info()["num_docs"]) > 0,
                    timeout=30,
                    what="the large model's answer admitted to the cache",
                )
                keys = [k.decode() for k in client.scan_iter(count=1000)]
                assert keys
                assert all(k.startswith(settings.redis.key_prefix) for k in keys), keys
                metrics = httpx.get(f"{base}/metrics", timeout=10).text
                assert "iccache_requests_total" in metrics
                client.close()
    return answers
