"""What GitOps tools make of the operator's status: the Argo CD health script
(deploy/gitops/argocd-health.lua) run in a real Lua interpreter on the conditions the
operator computes, and the kstatus conditions (Reconciling, Stalled) Flux reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import LuaRuntime

from iccache_operator.status import (
    Observed,
    Replicas,
    compute_conditions,
    merge_conditions,
    with_kstatus,
)

GITOPS = Path(__file__).resolve().parents[2] / "deploy" / "gitops"
SCRIPT = (GITOPS / "argocd-health.lua").read_text()


def observed(*, router_ready: int = 2, problems: list[str] | None = None) -> Observed:
    return Observed(
        small=Replicas(1, 1),
        large=Replicas(1, 1),
        redis=Replicas(1, 1),
        router=Replicas(2, router_ready),
        cronjob=True,
        replay_suspended=False,
        problems=problems or [],
    )


def resource(conditions: list[dict[str, str]], generation: int = 3, seen: int = 3) -> Any:
    status = {
        "observedGeneration": seen,
        "conditions": merge_conditions([], with_kstatus(conditions), seen, "t"),
    }
    return {"metadata": {"generation": generation}, "status": status}


def argo_health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value

    lua.globals().obj = table(obj)
    hs = lua.execute(SCRIPT)
    return str(hs["status"]), str(hs["message"])


def kstatus(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj["status"]["conditions"]}


def test_ready_is_healthy_and_current() -> None:
    obj = resource(compute_conditions(observed()))
    assert argo_health(obj) == ("Healthy", "all parts ready")
    assert (kstatus(obj)["Reconciling"], kstatus(obj)["Stalled"]) == ("False", "False")


def test_parts_coming_up_are_progressing_and_reconciling() -> None:
    obj = resource(compute_conditions(observed(router_ready=0)))
    status, message = argo_health(obj)
    assert status == "Progressing"
    assert "RouterReady" in message
    assert (kstatus(obj)["Reconciling"], kstatus(obj)["Stalled"]) == ("True", "False")


def test_a_missing_secret_is_degraded_and_stalled() -> None:
    problem = "spec.models.large.apiKeySecretRef: Secret 'llm-key' with key 'token' not found"
    obj = resource(compute_conditions(observed(problems=[problem])))
    assert argo_health(obj) == ("Degraded", problem)
    assert (kstatus(obj)["Reconciling"], kstatus(obj)["Stalled"]) == ("False", "True")


def test_a_spec_the_operator_has_not_seen_is_progressing() -> None:
    obj = resource(compute_conditions(observed()), generation=4, seen=3)
    assert argo_health(obj) == ("Progressing", "waiting for the operator to see generation 4")
    assert argo_health({"metadata": {"generation": 1}})[0] == "Progressing"  # no status yet


@pytest.mark.parametrize("reason", ["InvalidSpec", "InvalidReference"])
def test_only_what_waiting_cannot_fix_stalls(reason: str) -> None:
    ready = {"type": "Ready", "status": "False", "reason": reason, "message": "m"}
    assert kstatus(resource([ready]))["Stalled"] == "True"
    waiting = {**ready, "reason": "Waiting"}
    assert kstatus(resource([waiting]))["Stalled"] == "False"


def test_the_argocd_patch_holds_the_same_script() -> None:
    patch = yaml.safe_load((GITOPS / "argocd-cm-patch.yaml").read_text())
    assert patch["data"]["resource.customizations.health.iccache.dev_InContextCache"] == SCRIPT
