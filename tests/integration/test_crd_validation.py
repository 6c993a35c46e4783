"""The API server itself rejects invalid InContextCaches at apply time, naming the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from iccache_dev.local.cluster import LocalCluster
from iccache_operator.crd import CRD_FILE

URL = "http://models.internal/files/small.gguf"
SHA = "0" * 64
CLAIM = {"claimName": "models", "path": "small.gguf"}
SAMPLE = yaml.safe_load((CRD_FILE.parent / "samples" / "cpu-llamacpp.yaml").read_text())


def variant(change: Callable[[dict[str, Any]], None]) -> str:
    doc = copy.deepcopy(SAMPLE)
    change(doc["spec"])
    return yaml.safe_dump(doc)


def test_sample_is_accepted_and_defaulted(crd_installed: LocalCluster, namespace: str) -> None:
    crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(SAMPLE))
    got = crd_installed.get_json("icc", "demo", "-n", namespace)["spec"]
    assert got["routing"]["policy"] == "bandit"  # defaults filled in by the API server
    assert got["retrieval"]["maxExamples"] == 3
    assert got["models"]["small"]["replicas"] == 1
    assert got["cache"]["managed"]["image"] == "redis:8.2"


def test_model_sources_are_accepted(crd_installed: LocalCluster, namespace: str) -> None:
    doc = copy.deepcopy(SAMPLE)
    doc["spec"]["models"]["small"]["source"] = {"url": URL, "sha256": SHA}
    doc["spec"]["models"]["large"]["source"] = {"pvc": {"claimName": "models", "path": "a/b.gguf"}}
    crd_installed.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    got = crd_installed.get_json("icc", "demo", "-n", namespace)["spec"]["models"]
    assert got["small"]["source"]["cacheSize"] == "20Gi"  # defaulted by the API server
    assert got["large"]["source"]["pvc"]["path"] == "a/b.gguf"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(spec: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = spec
        for p in parents:
            node = node[p]
        del node[leaf]

    return change


def _same_models(spec: dict[str, Any]) -> None:
    spec["models"]["large"] = copy.deepcopy(spec["models"]["small"])


INVALID = [
    ("unknown engine", _set("models.small.engine", "tpu"), "spec.models.small.engine"),
    (
        "external without endpoint",
        _set("models.large.engine", "external"),
        "an external model needs an endpoint",
    ),
    (
        "endpoint on a llamacpp model",
        _set("models.small.endpoint", "http://x:8000/v1"),
        "an external model needs an endpoint",
    ),
    ("same small and large", _same_models, "small and large must be different models"),
    ("negative replicas", _set("models.small.replicas", -1), "spec.models.small.replicas"),
    ("zero cost", _set("models.large.costPerToken", 0), "spec.models.large.costPerToken"),
    ("cron with 3 fields", _set("replay.schedule", "0 3 *"), "exactly 5 fields"),
    ("unknown policy", _set("routing.policy", "coin-flip"), "spec.routing.policy"),
    ("exploration over 1", _set("routing.explorationRate", 2), "spec.routing.explorationRate"),
    (
        "external cache without url",
        _set("cache.mode", "external"),
        "mode external needs cache.external",
    ),
    (
        "bad endpoint scheme",
        lambda s: s["models"].__setitem__(
            "large", {"engine": "external", "model": "m", "endpoint": "ftp://host/v1"}
        ),
        "spec.models.large.endpoint",
    ),
    ("missing models", _drop("models"), "spec.models"),
    ("bad tenant", _set("cache.defaultTenant", "has space"), "spec.cache.defaultTenant"),
    ("api keys without a Secret", _set("tenancy.mode", "api-keys"), "mode api-keys needs"),
    ("gateway without its secret", _set("tenancy.mode", "gateway"), "mode gateway needs"),
    ("unknown tenancy mode", _set("tenancy.mode", "header"), "spec.tenancy.mode"),
    (
        "two model sources",
        _set("models.small.source", {"url": URL, "sha256": SHA, "pvc": CLAIM}),
        "exactly one of url, pvc or hub",
    ),
    ("url without sha256", _set("models.small.source", {"url": URL}), "url and sha256 go together"),
    (
        "sha256 not hex",
        _set("models.small.source", {"url": URL, "sha256": "x" * 64}),
        "spec.models.small.source.sha256",
    ),
    (
        "url that names no file",
        _set("models.small.source", {"url": "http://models.internal/", "sha256": SHA}),
        "spec.models.small.source.url",
    ),
    (
        "hub source for llama.cpp",
        _set("models.small.source", {"hub": {"id": "org/model"}}),
        "a hub source is only for vllm",
    ),
    (
        "claim path climbing out",
        _set("models.small.source", {"pvc": {"claimName": "models", "path": "../etc/passwd"}}),
        "may not contain '..'",
    ),
    (
        "absolute claim path",
        _set("models.small.source", {"pvc": {"claimName": "models", "path": "/m.gguf"}}),
        "relative to the claim's root",
    ),
    (
        "source on an external model",
        lambda s: s["models"].__setitem__(
            "large",
            {
                "engine": "external",
                "model": "m",
                "endpoint": "http://host/v1",
                "source": {"pvc": CLAIM},
            },
        ),
        "external models have no source",
    ),
]


@pytest.mark.parametrize(("what", "change", "needle"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_resources_are_rejected_naming_the_problem(
    crd_installed: LocalCluster, namespace: str, what: str, change: Any, needle: str
) -> None:
    done = crd_installed.kubectl(
        "apply", "-n", namespace, "-f", "-", input=variant(change), check=False
    )
    assert done.returncode != 0, f"{what} was accepted"
    assert needle in done.stderr, done.stderr
    assert crd_installed.kubectl("get", "icc", "-n", namespace, "-o", "name").stdout == ""
