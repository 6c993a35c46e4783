"""The operator under real faults on a real control plane (kwok nodes): killed with
SIGKILL in the middle of a reconcile and started again, and the API server killed and
started again under a running operator. Either way it converges to exactly the children
its plan names, once each, keeping the ones that existed (same uid, same generated
password), and goes on following changes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_faults import HOLDING

from iccache_dev.local.cluster import LocalCluster
from iccache_dev.local.operator import start_operator
from iccache_dev.local.process import ManagedProcess, wait_until
from iccache_operator import api
from iccache_operator.children.common import Owner
from iccache_operator.crd import CRD_FILE
from iccache_operator.plan import plan

SAMPLE = CRD_FILE.parent / "samples" / "cpu-llamacpp.yaml"
HERE = Path(__file__).parent
SIDECAR = {"ICCACHE_SIDECAR_IMAGE": "example/sidecar:1"}
KINDS = "deployment,statefulset,service,configmap,cronjob,secret,networkpolicy,serviceaccount"
HELD_APPLY = 3  # the kill comes while the fourth child is being applied


def owned(k: LocalCluster, ns: str, uid: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every object in ``ns`` whose owner is the InContextCache ``uid``, by (kind, name)."""
    items = k.get_json(KINDS, "-n", ns)["items"]
    return {
        (o["kind"], o["metadata"]["name"]): o
        for o in items
        if any(ref["uid"] == uid for ref in o["metadata"].get("ownerReferences", []))
    }


def planned(k: LocalCluster, ns: str) -> set[tuple[str, str]]:
    icc = k.get_json("icc", "demo", "-n", ns)
    owner = Owner("demo", ns, icc["metadata"]["uid"])
    spec = api.InContextCacheSpec.model_validate(yaml.safe_load(SAMPLE.read_text())["spec"])
    wanted = plan(owner, spec, SIDECAR["ICCACHE_SIDECAR_IMAGE"])
    return {(m["kind"], m["metadata"]["name"]) for m in [*wanted.apply, *wanted.create_only]}


def uid_of(k: LocalCluster, ns: str) -> str:
    return str(k.get_json("icc", "demo", "-n", ns)["metadata"]["uid"])


@pytest.fixture
def sample_volumes(crd_installed: LocalCluster, namespace: str) -> LocalCluster:
    crd_installed.bind_static_volume(namespace, "data-demo-redis-0")
    crd_installed.bind_static_volume(namespace, "models", create_claim=True)
    return crd_installed


def held_operator(k: LocalCluster, ns: str, tmp_path: Path, marker: Path) -> ManagedProcess:
    env = {
        **SIDECAR,
        "ICCACHE_TEST_HOLD_FILE": str(marker),
        "ICCACHE_TEST_HOLD_SKIP": str(HELD_APPLY),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    args = ["--standalone", "--namespace", ns, "-m", "operator_faults"]
    return start_operator(args, k.kubeconfig, tmp_path / "held-operator.log", env)


def test_killed_mid_reconcile_the_next_operator_converges_without_duplicates(
    sample_volumes: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    k, ns = sample_volumes, namespace
    marker = tmp_path / "hold"
    marker.touch()  # the first reconcile holds its fourth apply
    first = held_operator(k, ns, tmp_path, marker)
    try:
        k.kubectl("apply", "-n", ns, "-f", str(SAMPLE))
        wait_until(lambda: HOLDING in first.log_path.read_text(), timeout=60, what="the hold")
        first.kill()  # SIGKILL in the middle of the reconcile
    finally:
        first.stop()
    uid = uid_of(k, ns)
    want = planned(k, ns)
    before = owned(k, ns, uid)
    assert before, "the first operator applied nothing before it was killed"
    assert set(before) < want, "the kill did not come in the middle of the reconcile"
    password = before[("Secret", "demo-redis-auth")]["data"]
    print(f"killed with {len(before)} of the {len(want)} planned children made")

    second = start_operator(
        ["--standalone", "--namespace", ns], k.kubeconfig, tmp_path / "operator.log", SIDECAR
    )
    with second:
        k.kubectl("wait", "-n", ns, "--for=condition=Ready", "icc/demo", "--timeout=180s")
        after = owned(k, ns, uid)
        assert set(after) == want  # every planned child, nothing else, each once
        for key, obj in before.items():  # the children that existed are kept, not remade
            assert after[key]["metadata"]["uid"] == obj["metadata"]["uid"], key
        assert after[("Secret", "demo-redis-auth")]["data"] == password
        icc = k.get_json("icc", "demo", "-n", ns)
        assert icc["status"]["observedGeneration"] == icc["metadata"]["generation"]
        k.kubectl("delete", "icc", "demo", "-n", ns, "--wait=true", "--timeout=120s")


def test_after_an_api_server_restart_the_operator_keeps_reconciling(
    sample_volumes: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    k, ns = sample_volumes, namespace
    operator = start_operator(
        ["--standalone", "--namespace", ns], k.kubeconfig, tmp_path / "operator.log", SIDECAR
    )
    with operator:
        k.kubectl("apply", "-n", ns, "-f", str(SAMPLE))
        k.kubectl("wait", "-n", ns, "--for=condition=Ready", "icc/demo", "--timeout=180s")
        uid = uid_of(k, ns)
        before = owned(k, ns, uid)

        took = k.restart_apiserver()
        print(f"API server back after {took:.1f} s")
        assert operator.exit_message() is None, operator.exit_message()

        patch = {"spec": {"router": {"replicas": 3}}}
        k.kubectl("patch", "icc", "demo", "-n", ns, "--type=merge", "-p", json.dumps(patch))

        def scaled() -> bool:
            found = k.get_json("deployment", "demo-router", "-n", ns)
            return bool(found["spec"]["replicas"] == 3)

        wait_until(scaled, timeout=120, what="the router scaled after the restart")
        k.kubectl("wait", "-n", ns, "--for=condition=Ready", "icc/demo", "--timeout=120s")
        after = owned(k, ns, uid)
        assert set(after) == set(before) == planned(k, ns)
        assert operator.exit_message() is None, operator.exit_message()
        k.kubectl("delete", "icc", "demo", "-n", ns, "--wait=true", "--timeout=120s")
