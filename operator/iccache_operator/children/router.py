"""The router: ConfigMap (its typed settings, rendered from the spec), Deployment and
Service. The settings go through the router's own model, so the operator can only write
what the router can read; their hash rolls the Deployment when they change."""

from __future__ import annotations

import hashlib
from typing import Any

import yaml

from iccache_contract import names
from iccache_contract.settings import RouterSettings
from iccache_operator import api
from iccache_operator.children.common import (
    REDIS_PORT,
    RESTRICTED_CONTAINER,
    SIDECAR_USER,
    Owner,
    resources,
)
from iccache_operator.children.models import max_in_flight, model_base_url, served_name
from iccache_operator.children.redis import PASSWORD_KEY

COMPONENT = "router"
CONFIG_FILE = "router.yaml"
CONFIG_DIR = "/etc/iccache"
HASH_ANNOTATION = "iccache.dev/config-hash"
API_KEY_ENV = {"small": "ICCACHE_SMALL_API_KEY", "large": "ICCACHE_LARGE_API_KEY"}
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
KEYS_DIR = "/etc/iccache-keys"  # beside the config mount, not inside it
KEYS_FILE = "keys.yaml"
GATEWAY_SECRET_ENV = "ICCACHE_GATEWAY_SECRET"
ADMIN_KEY_ENV = "ICCACHE_ADMIN_KEY"


def router_settings(owner: Owner, spec: api.InContextCacheSpec) -> RouterSettings:
    backends: dict[str, dict[str, Any]] = {}
    for role in ("small", "large"):
        model: api.ModelSpec = getattr(spec.models, role)
        backends[role] = {
            "base_url": model_base_url(owner, role, model),
            "model": served_name(model),
            "cost_per_token": model.cost_per_token,
            "max_context_tokens": model.max_context_tokens,
            "api_key_env": API_KEY_ENV[role] if model.api_key_secret_ref else None,
        }
        busy_at = max_in_flight(role, model)
        if busy_at is not None:
            backends[role]["max_in_flight"] = busy_at
    cache = spec.cache
    redis: dict[str, Any] = {
        "index_name": f"iccache-{owner.name}",
        "key_prefix": f"iccache:{owner.name}",
    }
    if cache.mode == "managed":
        redis["url"] = f"redis://{owner.service_host('redis')}:{REDIS_PORT}"
        redis["password_env"] = REDIS_PASSWORD_ENV
    elif cache.external is not None:
        redis["url"] = cache.external.url
        if cache.external.password_secret_ref:
            redis["password_env"] = REDIS_PASSWORD_ENV
    r, g = spec.retrieval, spec.routing
    # model_validate, not the constructor: the operator's own environment must not leak in.
    return RouterSettings.model_validate(
        {
            "small": backends["small"],
            "large": backends["large"],
            "redis": redis,
            "retrieval": r.model_dump(),
            "routing": g.model_dump(),
            "verifier": spec.verifier.model_dump(),
            "opening": spec.opening.model_dump(),
            "responses": spec.responses.model_dump(),
            "embeddings_api": spec.embeddings.model_dump(),
            "cache": {
                "store_small": cache.store_small,
                "dedupe_similarity": cache.dedupe_similarity,
                "capacity": cache.capacity,
                "ttl_seconds": cache.ttl_seconds,
                "redact_pii": cache.redact_pii,
                "store_cut": cache.store_cut,
                "share": cache.share,
                "ineligible": cache.ineligible.model_dump(),
            },
            "tenancy": tenancy_settings(spec),
            "server": {
                "http_port": spec.router.http_port,
                "grpc_port": spec.router.grpc_port,
                **{name: getattr(spec.router, name) for name in api.SERVER_FIELDS},
            },
            "replay": {
                "low_load": spec.replay.low_load_threshold,
                "budget_requests": spec.replay.budget_requests,
                "budget_tokens": spec.replay.budget_tokens,
                "deadline_seconds": spec.replay.deadline_seconds,
            },
        }
    )


def tenancy_settings(spec: api.InContextCacheSpec) -> dict[str, Any]:
    t = spec.tenancy
    return {
        "mode": t.mode,
        "default_tenant": spec.cache.default_tenant,
        "header": spec.cache.tenant_header,
        "user_header": spec.cache.user_header,
        "keys_file": f"{KEYS_DIR}/{KEYS_FILE}" if t.mode == "api-keys" else None,
        "gateway_secret_env": GATEWAY_SECRET_ENV if t.mode == "gateway" else None,
        "admin_key_env": ADMIN_KEY_ENV if t.admin_secret_ref else None,
        "limits": t.limits.model_dump(),
        "overrides": {name: o.model_dump() for name, o in t.overrides.items()},
    }


def render_settings(settings: RouterSettings) -> str:
    return yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=True)


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def router_configmap(owner: Owner, settings_yaml: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": owner.metadata("router-config", COMPONENT),
        "data": {CONFIG_FILE: settings_yaml},
    }


def secret_env(owner: Owner, spec: api.InContextCacheSpec) -> list[dict[str, Any]]:
    """Environment variables that carry secrets (Redis password, API keys)."""
    env: list[dict[str, Any]] = []
    if spec.cache.mode == "managed":
        ref = {"name": owner.child("redis-auth"), "key": PASSWORD_KEY}
        env.append({"name": REDIS_PASSWORD_ENV, "valueFrom": {"secretKeyRef": ref}})
    elif spec.cache.external and spec.cache.external.password_secret_ref:
        ref = spec.cache.external.password_secret_ref.model_dump()
        env.append({"name": REDIS_PASSWORD_ENV, "valueFrom": {"secretKeyRef": ref}})
    for role in ("small", "large"):
        model: api.ModelSpec = getattr(spec.models, role)
        if model.api_key_secret_ref:
            ref = model.api_key_secret_ref.model_dump()
            env.append({"name": API_KEY_ENV[role], "valueFrom": {"secretKeyRef": ref}})
    t = spec.tenancy
    if t.mode == "gateway" and t.gateway_secret_ref:
        ref = t.gateway_secret_ref.model_dump()
        env.append({"name": GATEWAY_SECRET_ENV, "valueFrom": {"secretKeyRef": ref}})
    if t.admin_secret_ref:
        ref = t.admin_secret_ref.model_dump()
        env.append({"name": ADMIN_KEY_ENV, "valueFrom": {"secretKeyRef": ref}})
    return env


def keys_volume(spec: api.InContextCacheSpec) -> dict[str, Any] | None:
    """The API keys Secret as a file; the kubelet updates it in place when it changes."""
    ref = spec.tenancy.api_keys_secret_ref
    if spec.tenancy.mode != "api-keys" or ref is None:
        return None
    items = [{"key": ref.key, "path": KEYS_FILE}]
    return {"name": "api-keys", "secret": {"secretName": ref.name, "items": items}}


def sidecar_pod(
    owner: Owner,
    spec: api.InContextCacheSpec,
    image: str,
    args: list[str],
    component: str,
    config_hash_value: str,
) -> dict[str, Any]:
    """The pod template shared by the router and the replay job (one image)."""
    pod: dict[str, Any] = {
        "metadata": {
            "labels": owner.labels(component),
            "annotations": {HASH_ANNOTATION: config_hash_value},
        },
        "spec": {
            "serviceAccountName": owner.child("iccache"),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": SIDECAR_USER,
                "runAsGroup": SIDECAR_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": component,
                    "image": image,
                    "args": args,
                    "env": [
                        {"name": names.CONFIG_ENV, "value": f"{CONFIG_DIR}/{CONFIG_FILE}"},
                        *secret_env(owner, spec),
                    ],
                    "resources": resources(spec.router.resources),
                    "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True},
                    "volumeMounts": [
                        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": owner.child("router-config")}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    keys = keys_volume(spec)
    if keys is not None:
        pod["spec"]["volumes"].append(keys)
        mount = {"name": keys["name"], "mountPath": KEYS_DIR, "readOnly": True}
        pod["spec"]["containers"][0]["volumeMounts"].append(mount)
    return pod


def router_deployment(
    owner: Owner, spec: api.InContextCacheSpec, image: str, config_hash_value: str
) -> dict[str, Any]:
    pod = sidecar_pod(owner, spec, image, ["serve"], COMPONENT, config_hash_value)
    # The kubelet's SIGKILL comes after the drain and the grace, not in the middle.
    shutdown = spec.router.drain_seconds + spec.router.shutdown_grace_seconds
    pod["spec"]["terminationGracePeriodSeconds"] = int(shutdown) + 10
    container = pod["spec"]["containers"][0]
    container["ports"] = [
        {"name": "http", "containerPort": spec.router.http_port},
        {"name": "grpc", "containerPort": spec.router.grpc_port},
    ]
    container["readinessProbe"] = {
        "httpGet": {"path": names.READY_PATH, "port": "http"},
        "periodSeconds": 5,
    }
    container["livenessProbe"] = {
        "httpGet": {"path": names.HEALTH_PATH, "port": "http"},
        "periodSeconds": 15,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": owner.metadata("router", COMPONENT),
        "spec": {
            "replicas": spec.router.replicas,
            "selector": {"matchLabels": owner.selector(COMPONENT)},
            "template": pod,
        },
    }


def router_service(owner: Owner, spec: api.InContextCacheSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata("router", COMPONENT),
        "spec": {
            "selector": owner.selector(COMPONENT),
            "ports": [
                {"name": "http", "port": spec.router.http_port, "targetPort": "http"},
                {
                    "name": "grpc",
                    "port": spec.router.grpc_port,
                    "targetPort": "grpc",
                    "appProtocol": "grpc",
                },
            ],
        },
    }
