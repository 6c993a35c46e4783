"""Deployment + Service for a model served in the cluster (vLLM or llama.cpp)."""

from __future__ import annotations

from typing import Any, Literal

from iccache_operator import api
from iccache_operator.children.common import (
    HARDENED_CONTAINER,
    MODEL_PORT,
    Owner,
    SpecError,
    resources,
)

Role = Literal["small", "large"]

DEFAULT_IMAGES = {
    "vllm": "vllm/vllm-openai:v0.11.0",
    "llamacpp": "ghcr.io/ggml-org/llama.cpp:server",
}


# Sequences an engine decodes at once per replica when its arguments do not say
# (llama.cpp's --parallel defaults to "auto", which is 4 slots; vLLM's --max-num-seqs is 256).
DEFAULT_SLOTS = {"llamacpp": 4, "vllm": 256}
SLOT_FLAGS = {"llamacpp": ("--parallel", "-np"), "vllm": ("--max-num-seqs",)}
SLOT_ENV = {"llamacpp": "LLAMA_ARG_N_PARALLEL"}


def slots_per_replica(role: Role, spec: api.ModelSpec) -> int:
    """The parallel sequences one replica serves, read from its arguments like the engine
    does: the last flag wins over earlier ones and over the environment variable."""
    raw = next((e.value for e in spec.env if e.name == SLOT_ENV.get(spec.engine)), None)
    flags, args = SLOT_FLAGS[spec.engine], spec.args
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        if name in flags:
            raw = inline if eq else (args[i + 1] if i + 1 < len(args) else "")
    if raw is None:
        return DEFAULT_SLOTS[spec.engine]
    try:
        slots = int(raw)
    except ValueError:
        raise SpecError(
            f"models.{role}: the engine's parallel sequences must be a whole number, got {raw!r}"
        ) from None
    return slots if slots > 0 else DEFAULT_SLOTS[spec.engine]  # -1 is llama.cpp's "auto"


def max_in_flight(role: Role, spec: api.ModelSpec) -> int | None:
    """Requests in flight at which the router counts this model as busy; None leaves the
    router's default (external endpoints, whose capacity the operator cannot see)."""
    if spec.max_in_flight is not None:
        return spec.max_in_flight
    if spec.engine == "external":
        return None
    return slots_per_replica(role, spec) * max(1, spec.replicas)


def served_name(spec: api.ModelSpec) -> str:
    """The model name the router sends to the backend."""
    return spec.model


def engine_args(spec: api.ModelSpec) -> list[str]:
    if spec.engine == "vllm":
        return [
            "--model",
            spec.model,
            "--served-model-name",
            served_name(spec),
            "--host",
            "0.0.0.0",
            "--port",
            str(MODEL_PORT),
            "--max-model-len",
            str(spec.max_context_tokens),
            *spec.args,
        ]
    return [
        "--model",
        spec.model,
        "--alias",
        served_name(spec),
        "--host",
        "0.0.0.0",
        "--port",
        str(MODEL_PORT),
        "--ctx-size",
        str(spec.max_context_tokens),
        *spec.args,
    ]


def model_deployment(owner: Owner, role: Role, spec: api.ModelSpec) -> dict[str, Any]:
    if spec.engine == "external":
        raise SpecError("external models have no Deployment")
    component = f"model-{role}"
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    pod_spec: dict[str, Any] = {
        "containers": [
            {
                "name": "model",
                "image": spec.image or DEFAULT_IMAGES[spec.engine],
                "args": engine_args(spec),
                "env": [{"name": e.name, "value": e.value} for e in spec.env],
                "ports": [{"name": "http", "containerPort": MODEL_PORT}],
                "resources": resources(spec.resources),
                "securityContext": HARDENED_CONTAINER,
                # Loading weights takes long: a startup probe guards the others.
                "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 90},
                "readinessProbe": {**probe, "periodSeconds": 5},
                "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
            }
        ],
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations
        ]
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata(role, component),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": owner.selector(component)},
            "template": {"metadata": {"labels": owner.labels(component)}, "spec": pod_spec},
        },
    }


def model_service(owner: Owner, role: Role) -> dict[str, Any]:
    component = f"model-{role}"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata(role, component),
        "spec": {
            "selector": owner.selector(component),
            "ports": [{"name": "http", "port": MODEL_PORT, "targetPort": "http"}],
        },
    }


def model_base_url(owner: Owner, role: Role, spec: api.ModelSpec) -> str:
    if spec.engine == "external":
        if spec.endpoint is None:
            raise SpecError(f"models.{role}: an external model needs an endpoint")
        return spec.endpoint.rstrip("/")
    return f"http://{owner.service_host(role)}:{MODEL_PORT}/v1"
