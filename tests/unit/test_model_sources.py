"""Where model weights come from: url (an init container fetches and checks the file),
pvc (a claim that holds it) and, for vLLM, a hub id with an optional token."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from iccache_operator.api import InContextCacheSpec
from iccache_operator.children.common import Owner
from iccache_operator.children.models import url_file_name
from iccache_operator.plan import plan, referenced_secrets

SAMPLES = Path(__file__).resolve().parents[2] / "crds" / "samples"
OWNER = Owner("demo", "ml", "uid-1")
IMAGE = "example/sidecar:1"
SHA = "ab" * 32


def spec_with(role: str, **model: Any) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((SAMPLES / "cpu-llamacpp.yaml").read_text())["spec"]
    spec["models"][role] = {**copy.deepcopy(spec["models"][role]), **model}
    return spec


def pod(spec: dict[str, Any], role: str) -> dict[str, Any]:
    p = plan(OWNER, InContextCacheSpec.model_validate(spec), IMAGE)
    (dep,) = [
        m for m in p.apply if m["kind"] == "Deployment" and m["metadata"]["name"] == f"demo-{role}"
    ]
    result: dict[str, Any] = dep["spec"]["template"]["spec"]
    return result


def test_url_source_is_fetched_by_an_init_container_into_the_cache_volume() -> None:
    url = "http://models.internal/files/SmolLM2 135M.gguf?sig=1"
    source = {"url": url, "sha256": SHA, "cacheSize": "2Gi"}
    p = pod(spec_with("small", source=source), "small")
    (init,) = p["initContainers"]
    assert init["image"] == IMAGE  # the data-plane image carries `iccache fetch-model`
    assert init["args"] == [
        "fetch-model",
        "--url",
        url,
        "--sha256",
        SHA,
        "--dest",
        "/models/SmolLM2_135M.gguf",
    ]
    assert init["securityContext"]["runAsNonRoot"] is True
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["volumeMounts"] == [{"name": "model-cache", "mountPath": "/models"}]
    assert p["volumes"] == [
        {"name": "model-cache", "emptyDir": {"sizeLimit": "2Gi"}},
        {"name": "tmp", "emptyDir": {}},  # HOME: the engine runs as a user of its own
    ]
    (engine,) = p["containers"]
    assert engine["args"][:4] == ["--model", "/models/SmolLM2_135M.gguf", "--alias", "smollm2-135m"]
    # The engine reads the file; it cannot change what the init container checked.
    assert engine["volumeMounts"] == [
        {"name": "model-cache", "mountPath": "/models", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def test_pvc_source_mounts_the_claim_read_only_and_loads_the_path() -> None:
    p = pod(
        spec_with("large", source={"pvc": {"claimName": "weights", "path": "q/big.gguf"}}), "large"
    )
    assert "initContainers" not in p
    assert p["volumes"] == [
        {"name": "model", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}},
        {"name": "tmp", "emptyDir": {}},
    ]
    (engine,) = p["containers"]
    assert engine["args"][:2] == ["--model", "/models/q/big.gguf"]
    assert engine["volumeMounts"] == [
        {"name": "model", "mountPath": "/models", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def test_no_source_keeps_the_model_field_as_what_the_engine_loads() -> None:
    p = pod(spec_with("small", model="/opt/models/m.gguf", source=None), "small")
    assert p["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert p["containers"][0]["args"][:2] == ["--model", "/opt/models/m.gguf"]


def test_vllm_hub_source_gets_token_cache_and_shared_memory() -> None:
    spec: dict[str, Any] = yaml.safe_load((SAMPLES / "gpu-vllm.yaml").read_text())["spec"]
    spec["models"]["large"]["source"]["hub"]["revision"] = "v2"
    p = pod(spec, "large")
    (engine,) = p["containers"]
    args = engine["args"]
    assert args[:4] == ["--model", "Qwen/Qwen2.5-32B-Instruct", "--revision", "v2"]
    env = {e["name"]: e for e in engine["env"]}
    assert env["HF_HOME"]["value"] == "/models/hub"
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hub-token", "key": "token"}}
    volumes = {v["name"]: v for v in p["volumes"]}
    assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {"sizeLimit": "80Gi"}}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    mounts = {m["name"]: m["mountPath"] for m in engine["volumeMounts"]}
    assert mounts == {"model-cache": "/models", "shm": "/dev/shm", "tmp": "/tmp"}
    # The token is a referenced Secret: a missing one is reported in status.
    refs = referenced_secrets(InContextCacheSpec.model_validate(spec))
    assert ("spec.models.large.source.hub.tokenSecretRef", "hub-token", "token") in refs


def test_every_vllm_pod_has_shared_memory_even_without_a_source() -> None:
    spec: dict[str, Any] = yaml.safe_load((SAMPLES / "gpu-vllm.yaml").read_text())["spec"]
    p = pod(spec, "small")  # the small model has no source: vLLM fetches `model` itself
    names = {v["name"] for v in p["volumes"]}
    assert names == {"model-cache", "shm", "tmp"}
    env = {e["name"] for e in p["containers"][0]["env"]}
    assert "HF_HOME" in env
    assert "HF_TOKEN" not in env


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://h/a/b/model.Q4.gguf", "model.Q4.gguf"),
        ("https://h/a/..hidden", "hidden"),
        ("https://h/weights#frag", "weights"),
        ("https://h/a/%2F", "_2F"),
    ],
)
def test_url_file_names_are_safe(url: str, name: str) -> None:
    assert url_file_name(url) == name
