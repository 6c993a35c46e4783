"""What the container tier reads from the operator's pod templates: the user, the
read-only root, dropped capabilities and which mounts are writable (emptyDirs and
claims, never a configMap)."""

from __future__ import annotations

import pytest
import yaml

from iccache_dev.local.containers import PodContainer, pod_templates
from iccache_dev.local.images import security_args
from iccache_operator import api
from iccache_operator.children.common import Owner
from iccache_operator.crd import CRD_FILE
from iccache_operator.plan import plan

SAMPLE = CRD_FILE.parent / "samples" / "cpu-llamacpp.yaml"


def templates() -> dict[str, PodContainer]:
    spec = api.InContextCacheSpec.model_validate(yaml.safe_load(SAMPLE.read_text())["spec"])
    children = plan(Owner("demo", "ns", "0"), spec, "sidecar:1").apply
    return {name: PodContainer.of(*pod) for name, pod in pod_templates(children).items()}


def test_router_and_replay_run_restricted_with_tmp_as_the_only_writable_place() -> None:
    found = templates()
    for name in ("demo-router", "demo-replay"):
        pod = found[name]
        assert (pod.user, pod.read_only, pod.hardened) == ("10001:10001", True, True)
        assert pod.mounts == {"/etc/iccache": False, "/tmp": True}
    flags = security_args("10001:10001", read_only=True)
    assert {"--read-only", "--read-only-tmpfs=false", "no-new-privileges"} <= set(flags)
    assert flags[flags.index("--cap-drop") + 1] == "ALL"


def test_redis_writes_its_claim_and_models_run_as_a_user_of_their_own() -> None:
    found = templates()
    assert found["demo-redis"].user == "999:999"
    assert found["demo-redis"].mounts == {"/data": True}
    assert found["demo-redis"].hardened  # no capabilities, no privilege escalation
    for role in ("small", "large"):
        model = found[f"demo-{role}"]
        assert (model.user, model.read_only, model.hardened) == ("65532:65532", False, True)
        assert model.mounts.get("/tmp") is True  # its HOME, writable


def test_a_root_user_with_run_as_non_root_is_refused() -> None:
    with pytest.raises(ValueError, match="runAsNonRoot"):
        PodContainer.of({"securityContext": {"runAsNonRoot": True, "runAsUser": 0}}, {})
