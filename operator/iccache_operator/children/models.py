"""Deployment + Service for a model served in the cluster (vLLM or llama.cpp)."""

from __future__ import annotations

from typing import Any, Literal

from iccache_operator import api
from iccache_operator.children.common import (
    HARDENED_CONTAINER,
    MODEL_PORT,
    RESTRICTED_CONTAINER,
    SIDECAR_USER,
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


MODELS_DIR = "/models"
HF_HOME = f"{MODELS_DIR}/hub"


def served_name(spec: api.ModelSpec) -> str:
    """The model name the router sends to the backend."""
    return spec.model


def url_file_name(url: str) -> str:
    """The file a url source is saved as: the last part of its path, made safe."""
    last = url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in last).lstrip(".")
    return safe or "model"


def model_location(spec: api.ModelSpec) -> str:
    """What the engine loads: the source's file, folder or hub id, else ``model``."""
    source = spec.source
    if source is None:
        return spec.model
    if source.url is not None:
        return f"{MODELS_DIR}/{url_file_name(source.url)}"
    if source.pvc is not None:
        return f"{MODELS_DIR}/{source.pvc.path}"
    if source.hub is not None:
        return source.hub.id
    raise SpecError("a model source is exactly one of url, pvc or hub")


def engine_args(spec: api.ModelSpec) -> list[str]:
    if spec.engine == "vllm":
        revision = spec.source.hub.revision if spec.source and spec.source.hub else None
        return [
            "--model",
            model_location(spec),
            *(["--revision", revision] if revision else []),
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
        model_location(spec),
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


def fetch_container(spec: api.ModelSource, fetch_image: str, dest: str) -> dict[str, Any]:
    """The init container that downloads a url source to ``dest`` in the cache volume
    (kept across restarts of the pod's containers; a file whose sha256 matches is not
    fetched again)."""
    if spec.url is None or spec.sha256 is None:
        raise SpecError("a url source needs url and sha256")
    return {
        "name": "fetch-model",
        "image": fetch_image,
        "args": [
            "fetch-model",
            "--url",
            spec.url,
            "--sha256",
            spec.sha256,
            "--dest",
            dest,
        ],
        "volumeMounts": [{"name": "model-cache", "mountPath": MODELS_DIR}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {
            **RESTRICTED_CONTAINER,
            "runAsUser": SIDECAR_USER,
            "runAsGroup": SIDECAR_USER,
            "readOnlyRootFilesystem": True,
        },
    }


def model_volumes(
    spec: api.ModelSpec, fetch_image: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts of the engine, init containers, extra env) for where the weights
    come from; vLLM also gets a memory-backed /dev/shm and a hub cache."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    init: list[dict[str, Any]] = []
    env: list[dict[str, Any]] = []
    source = spec.source
    cache = {"name": "model-cache", "emptyDir": {}}
    if source is not None:
        cache["emptyDir"] = {"sizeLimit": str(source.cache_size)}
    if source is not None and source.url is not None:
        volumes.append(cache)
        mounts.append({"name": "model-cache", "mountPath": MODELS_DIR, "readOnly": True})
        init.append(fetch_container(source, fetch_image, model_location(spec)))
    elif source is not None and source.pvc is not None:
        claim = {"claimName": source.pvc.claim_name, "readOnly": True}
        volumes.append({"name": "model", "persistentVolumeClaim": claim})
        mounts.append({"name": "model", "mountPath": MODELS_DIR, "readOnly": True})
    elif spec.engine == "vllm":  # a hub id (the source's or the model field's)
        volumes.append(cache)
        mounts.append({"name": "model-cache", "mountPath": MODELS_DIR})
        env.append({"name": "HF_HOME", "value": HF_HOME})
        token = source.hub.token_secret_ref if source and source.hub else None
        if token is not None:
            ref = {"name": token.name, "key": token.key}
            env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    if spec.engine == "vllm":
        shm = {"medium": "Memory", "sizeLimit": str(spec.shm_size)}
        volumes.append({"name": "shm", "emptyDir": shm})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    return volumes, mounts, init, env


def model_deployment(
    owner: Owner, role: Role, spec: api.ModelSpec, fetch_image: str
) -> dict[str, Any]:
    """``fetch_image``: the data-plane image, whose ``iccache fetch-model`` brings a url
    source into the pod."""
    if spec.engine == "external":
        raise SpecError("external models have no Deployment")
    component = f"model-{role}"
    probe = {"httpGet": {"path": "/health", "port": "http"}}
    volumes, mounts, init, source_env = model_volumes(spec, fetch_image)
    # Not root: the engines write only caches, under a HOME on an emptyDir.
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    home = [{"name": "HOME", "value": "/tmp"}] if spec.run_as_user else []
    container: dict[str, Any] = {
        "name": "model",
        "image": spec.image or DEFAULT_IMAGES[spec.engine],
        "args": engine_args(spec),
        "env": [*home, *source_env, *({"name": e.name, "value": e.value} for e in spec.env)],
        "ports": [{"name": "http", "containerPort": MODEL_PORT}],
        "resources": resources(spec.resources),
        "securityContext": HARDENED_CONTAINER,
        # Loading weights takes long: a startup probe guards the others.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": 90},
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 4},
    }
    container["volumeMounts"] = mounts
    # A model server never calls the Kubernetes API: no token in its pods.
    pod_spec: dict[str, Any] = {"containers": [container], "automountServiceAccountToken": False}
    if spec.run_as_user:
        user = spec.run_as_user
        pod_spec["securityContext"] = {
            "runAsUser": user,
            "runAsGroup": user,
            "runAsNonRoot": True,
        }
    if init:
        pod_spec["initContainers"] = init
    pod_spec["volumes"] = volumes
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
