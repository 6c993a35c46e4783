"""Deployment + Service for a model served in the cluster (vLLM or llama.cpp)."""

from __future__ import annotations

from typing import Any, Literal

from iccache_operator import api
from iccache_operator.children.common import MODEL_PORT, Owner, SpecError, resources

Role = Literal["small", "large"]

DEFAULT_IMAGES = {
    "vllm": "vllm/vllm-openai:v0.11.0",
    "llamacpp": "ghcr.io/ggml-org/llama.cpp:server",
}


def served_name(spec: api.ModelSpec) -> str:
    """The model name the router sends to the backend."""
    return spec.model


def engine_args(spec: api.ModelSpec) -> list[str]:
    if spec.engine == "vllm":
        return [
            "--model", spec.model, "--served-model-name", served_name(spec),
            "--host", "0.0.0.0", "--port", str(MODEL_PORT),
            "--max-model-len", str(spec.max_context_tokens), *spec.args,
        ]  # fmt: skip
    return [
        "--model", spec.model, "--alias", served_name(spec),
        "--host", "0.0.0.0", "--port", str(MODEL_PORT),
        "--ctx-size", str(spec.max_context_tokens), *spec.args,
    ]  # fmt: skip


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
