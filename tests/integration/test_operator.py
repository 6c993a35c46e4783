"""The kopf operator reconciles InContextCaches on a real control plane (kwok nodes)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_faults import HOLD_SECONDS, HOLDING

from iccache_dev.local.cluster import POOL_LABEL, LocalCluster
from iccache_dev.local.operator import start_operator
from iccache_dev.local.process import ManagedProcess, wait_until
from iccache_operator.crd import CRD_FILE
from iccache_operator.handlers import RESYNC_SECONDS

SAMPLES = CRD_FILE.parent / "samples"
HERE = Path(__file__).parent


@pytest.fixture
def operator(
    crd_installed: LocalCluster, namespace: str, tmp_path: Path
) -> Iterator[ManagedProcess]:
    proc = start_operator(
        ["--standalone", "--namespace", namespace],
        crd_installed.kubeconfig,
        tmp_path / "operator.log",
        {"ICCACHE_SIDECAR_IMAGE": "example/sidecar:1"},
    )
    try:
        yield proc
    finally:
        proc.stop()


def template_hash(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["metadata"]["annotations"]["iccache.dev/config-hash"])


def get(cluster: LocalCluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    done = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_sample_reconciles_to_ready_and_follows_changes(
    crd_installed: LocalCluster, namespace: str, operator: ManagedProcess
) -> None:
    k = crd_installed
    k.bind_static_volume(namespace, "data-demo-redis-0")
    k.bind_static_volume(namespace, "models", create_claim=True)
    k.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "cpu-llamacpp.yaml"))
    k.kubectl("wait", "-n", namespace, "--for=condition=Ready", "icc/demo", "--timeout=180s")

    icc = k.get_json("icc", "demo", "-n", namespace)
    status = icc["status"]
    assert status["observedGeneration"] == icc["metadata"]["generation"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "ModelsReady": "True",
        "CacheReady": "True",
        "RouterReady": "True",
        "ReplayScheduled": "True",
        "Ready": "True",
        "Reconciling": "False",  # kstatus (Flux): Current
        "Stalled": "False",
    }
    assert status["small"] == {"replicas": 1, "readyReplicas": 1}
    assert status["endpoints"]["http"] == f"http://demo-router.{namespace}.svc:8080/v1"
    children = [
        ("deployment", "demo-small"),
        ("deployment", "demo-large"),
        ("deployment", "demo-router"),
        ("statefulset", "demo-redis"),
        ("service", "demo-router"),
        ("configmap", "demo-router-config"),
        ("cronjob", "demo-replay"),
        ("secret", "demo-redis-auth"),
        ("networkpolicy", "demo-redis"),
        ("serviceaccount", "demo-iccache"),
    ]
    for kind, name in children:
        assert get(k, namespace, kind, name) is not None, (kind, name)
    cron = get(k, namespace, "cronjob", "demo-replay")
    assert cron
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"

    # Scale the router and change a retrieval setting: the Deployment scales, the
    # ConfigMap changes and the router's pod template (so its Pods) roll.
    before = get(k, namespace, "deployment", "demo-router")
    assert before is not None
    old_hash = template_hash(before)
    k.kubectl(
        "patch",
        "icc",
        "demo",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"router": {"replicas": 3}, "retrieval": {"maxExamples": 5}}}),
    )

    def rolled() -> bool:
        dep = get(k, namespace, "deployment", "demo-router")
        cm = get(k, namespace, "configmap", "demo-router-config")
        return bool(
            dep
            and cm
            and dep["spec"]["replicas"] == 3
            and template_hash(dep) != old_hash
            and yaml.safe_load(cm["data"]["router.yaml"])["retrieval"]["max_examples"] == 5
        )

    wait_until(rolled, timeout=60, what="router scaled and rolled")
    k.kubectl("rollout", "status", "deployment/demo-router", "-n", namespace, "--timeout=120s")

    # A child deleted by hand comes back.
    k.kubectl("delete", "service", "demo-router", "-n", namespace)
    wait_until(
        lambda: get(k, namespace, "service", "demo-router") is not None,
        timeout=60,
        what="router Service restored",
    )

    # Deleting the resource deletes everything it owns.
    k.kubectl("delete", "icc", "demo", "-n", namespace)
    for target in (
        "deployment/demo-router",
        "deployment/demo-small",
        "statefulset/demo-redis",
        "configmap/demo-router-config",
        "cronjob/demo-replay",
    ):
        k.kubectl("wait", "-n", namespace, "--for=delete", target, "--timeout=120s")


def test_gpu_sample_models_land_on_their_pools(
    crd_installed: LocalCluster, namespace: str, operator: ManagedProcess
) -> None:
    k = crd_installed
    k.bind_static_volume(namespace, "data-gpu-redis-0")
    k.kubectl("create", "secret", "generic", "hub-token", "-n", namespace, "--from-literal=token=t")
    k.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "gpu-vllm.yaml"))
    k.kubectl("wait", "-n", namespace, "--for=condition=Ready", "icc/gpu", "--timeout=180s")
    for role, pool in (("small", "gpu-a"), ("large", "gpu-b")):
        pods = k.get_json(
            "pods", "-n", namespace, "-l", f"app.kubernetes.io/component=model-{role}"
        )["items"]
        assert pods
        for pod in pods:
            node = k.get_json("node", pod["spec"]["nodeName"])
            assert node["metadata"]["labels"][POOL_LABEL] == pool


def with_external_large(secret: str) -> dict[str, Any]:
    """The CPU sample with an external large model keyed by ``secret`` (key ``token``)
    and an external Redis: no claim or model pod is needed for the router."""
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / "cpu-llamacpp.yaml").read_text())
    doc["spec"]["models"]["large"] = {
        "engine": "external",
        "model": "big",
        "endpoint": "https://llm.example/v1",
        "apiKeySecretRef": {"name": secret, "key": "token"},
    }
    doc["spec"]["cache"] = {"mode": "external", "external": {"url": "redis://cache:6379"}}
    return doc


def test_missing_secret_reports_ready_false_with_reason(
    crd_installed: LocalCluster, namespace: str, operator: ManagedProcess
) -> None:
    doc = with_external_large("no-such-secret")
    doc["metadata"]["name"] = "broken"
    crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    reason = '{.status.conditions[?(@.type=="Ready")].reason}'
    crd_installed.kubectl(
        "wait",
        "-n",
        namespace,
        "icc/broken",
        "--timeout=120s",
        f"--for=jsonpath={reason}=InvalidReference",
    )
    ready = next(
        c
        for c in crd_installed.get_json("icc", "broken", "-n", namespace)["status"]["conditions"]
        if c["type"] == "Ready"
    )
    assert ready["status"] == "False"
    assert "no-such-secret" in ready["message"]
    kstatus = {
        c["type"]: c["status"]
        for c in crd_installed.get_json("icc", "broken", "-n", namespace)["status"]["conditions"]
    }
    assert (kstatus["Stalled"], kstatus["Reconciling"]) == ("True", "False")  # Flux: Failed
    # The sample's small model reads a claim this namespace does not have.
    assert (
        "spec.models.small.source.pvc: PersistentVolumeClaim 'models' not found"
        in (ready["message"])
    )


def test_a_rotated_secret_rolls_the_router(
    crd_installed: LocalCluster, namespace: str, operator: ManagedProcess
) -> None:
    """The routers read a model's API key once, at start: a new version of its Secret
    changes the pod template (and so rolls them) within a resync; the key itself never
    appears in the Deployment."""
    k = crd_installed
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "llm-key", "namespace": namespace},
        "stringData": {"token": "sk-first-0000000000"},
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(secret))
    doc = with_external_large("llm-key")
    k.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    wait_until(
        lambda: get(k, namespace, "deployment", "demo-router") is not None,
        timeout=60,
        what="the router Deployment",
    )
    first = template_hash(get(k, namespace, "deployment", "demo-router") or {})
    secret["stringData"] = {"token": "sk-second-000000000"}
    k.kubectl("apply", "-f", "-", input=json.dumps(secret))

    def rolled() -> bool:
        return template_hash(get(k, namespace, "deployment", "demo-router") or {}) != first

    wait_until(rolled, timeout=RESYNC_SECONDS * 3, what="a new router pod template")
    text = json.dumps(get(k, namespace, "deployment", "demo-router"))
    assert "sk-second" not in text
    assert "sk-first" not in text


def test_a_rotated_managed_redis_password_restarts_redis_and_the_routers(
    crd_installed: LocalCluster, namespace: str, operator: ManagedProcess
) -> None:
    """The managed Redis's password Secret is made before Redis, so Redis starts with
    its first version; a new password rolls Redis (its data is on the claim) and the
    routers, which read it at start."""
    k = crd_installed
    doc = yaml.safe_load((SAMPLES / "cpu-llamacpp.yaml").read_text())
    k.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))

    def redis_version() -> str:
        sts = get(k, namespace, "statefulset", "demo-redis") or {}
        annotations = sts.get("spec", {}).get("template", {}).get("metadata", {})
        return str((annotations.get("annotations") or {}).get("iccache.dev/password-version", ""))

    wait_until(lambda: bool(redis_version()), timeout=60, what="the Redis StatefulSet")
    first_redis = redis_version()
    secret = get(k, namespace, "secret", "demo-redis-auth") or {}
    assert secret["metadata"]["resourceVersion"] == first_redis  # no restart after creation
    first_router = template_hash(get(k, namespace, "deployment", "demo-router") or {})
    metadata = {"name": "demo-redis-auth", "namespace": namespace}
    rotated = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata}
    rotated["stringData"] = {"password": "a-new-password-0000000000000"}
    k.kubectl("apply", "-f", "-", input=json.dumps(rotated))
    wait_until(
        lambda: redis_version() not in ("", first_redis),
        timeout=RESYNC_SECONDS * 3,
        what="a new Redis pod template",
    )
    router = get(k, namespace, "deployment", "demo-router") or {}
    assert template_hash(router) != first_router
    assert "a-new-password" not in json.dumps(get(k, namespace, "statefulset", "demo-redis"))


def test_delete_during_a_reconcile_is_not_held_back(
    crd_installed: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """kopf keeps a finalizer while the resync timer runs; a deletion that arrives in the
    middle of a reconcile must finish once that reconcile does, not a minute later."""
    k = crd_installed
    marker = tmp_path / "hold"
    log = tmp_path / "operator.log"
    proc = start_operator(
        ["--standalone", "--namespace", namespace, "-m", "operator_faults"],
        k.kubeconfig,
        log,
        {
            "ICCACHE_SIDECAR_IMAGE": "example/sidecar:1",
            "ICCACHE_TEST_HOLD_FILE": str(marker),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        },
    )
    with proc:
        k.bind_static_volume(namespace, "data-demo-redis-0")
        k.bind_static_volume(namespace, "models", create_claim=True)
        k.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "cpu-llamacpp.yaml"))
        k.kubectl("wait", "-n", namespace, "--for=condition=Ready", "icc/demo", "--timeout=180s")
        marker.touch()  # the next resync holds its first apply for HOLD_SECONDS
        wait_until(lambda: HOLDING in log.read_text(), timeout=RESYNC_SECONDS * 2 + 10)
        k.kubectl(
            "delete",
            "icc",
            "demo",
            "-n",
            namespace,
            "--wait=true",
            f"--timeout={HOLD_SECONDS * 4:.0f}s",
        )
    assert get(k, namespace, "icc", "demo") is None


def test_what_a_changed_spec_no_longer_plans_is_pruned_and_data_is_kept(
    crd_installed: LocalCluster, namespace: str, operator: ManagedProcess
) -> None:
    """Managed -> external, for the large model and for Redis: the model's Deployment,
    Service and NetworkPolicy, Redis's StatefulSet, Service and NetworkPolicy go; Redis's claim and
    password stay (they hold data) and the status names the claim. An object with the
    same labels that the resource does not control is left alone. Switched back, the
    children return on the kept claim and password."""
    k = crd_installed
    k.bind_static_volume(namespace, "data-demo-redis-0")
    k.bind_static_volume(namespace, "models", create_claim=True)
    k.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "cpu-llamacpp.yaml"))
    k.kubectl("wait", "-n", namespace, "--for=condition=Ready", "icc/demo", "--timeout=180s")
    labels = {
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/managed-by": "iccache-operator",
    }
    stranger = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "demo-large", "namespace": namespace, "labels": labels},
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(stranger))
    dropped = [
        ("deployment", "demo-large"),
        ("service", "demo-large"),
        ("networkpolicy", "demo-large"),
        ("statefulset", "demo-redis"),
        ("service", "demo-redis"),
        ("networkpolicy", "demo-redis"),
    ]
    for kind, name in dropped:
        assert get(k, namespace, kind, name) is not None, (kind, name)
    change = {
        "spec": {
            "models": {
                "large": {
                    "engine": "external",
                    "endpoint": "http://llm.example.invalid:8000/v1",
                    "source": None,
                }
            },
            "cache": {
                "mode": "external",
                "external": {"url": "redis://redis.example.invalid:6379"},
            },
        }
    }
    k.kubectl("patch", "icc", "demo", "-n", namespace, "--type=merge", "-p", json.dumps(change))

    def pruned() -> bool:
        return all(get(k, namespace, kind, name) is None for kind, name in dropped)

    wait_until(pruned, timeout=60, what="the children no longer planned to be deleted")
    for kind, name in [
        ("deployment", "demo-small"),
        ("networkpolicy", "demo-small"),
        ("deployment", "demo-router"),
        ("secret", "demo-redis-auth"),  # the password of the kept data
        ("persistentvolumeclaim", "data-demo-redis-0"),
        ("configmap", "demo-large"),  # not the resource's: left alone
    ]:
        assert get(k, namespace, kind, name) is not None, (kind, name)

    def retained() -> list[str]:
        return list(k.get_json("icc", "demo", "-n", namespace)["status"].get("retained") or [])

    wait_until(lambda: bool(retained()), timeout=30, what="status.retained")
    assert "PersistentVolumeClaim data-demo-redis-0" in retained()[0]

    # And back: the same spec as before, managed again. Redis's StatefulSet comes back
    # on the claim it left (same name), under the password it kept; the status no
    # longer names a retained claim; the large model's children come back.
    password = get(k, namespace, "secret", "demo-redis-auth")
    sample = yaml.safe_load((SAMPLES / "cpu-llamacpp.yaml").read_text())["spec"]
    back = {
        "spec": {
            "models": {"large": {**sample["models"]["large"], "endpoint": None}},
            "cache": {**sample.get("cache", {}), "mode": "managed", "external": None},
        }
    }
    k.kubectl("patch", "icc", "demo", "-n", namespace, "--type=merge", "-p", json.dumps(back))

    def restored() -> bool:
        return all(get(k, namespace, kind, name) is not None for kind, name in dropped)

    wait_until(restored, timeout=60, what="the children planned again to be created")
    wait_until(lambda: not retained(), timeout=30, what="status.retained emptied")
    k.kubectl("wait", "-n", namespace, "--for=condition=Ready", "icc/demo", "--timeout=180s")
    claim = get(k, namespace, "persistentvolumeclaim", "data-demo-redis-0")
    assert claim is not None
    assert claim["status"].get("phase") == "Bound"  # the data's volume, not a new one
    kept = get(k, namespace, "secret", "demo-redis-auth")
    assert kept is not None
    assert password is not None
    assert kept["data"] == password["data"]
    assert kept["metadata"]["uid"] == password["metadata"]["uid"]
