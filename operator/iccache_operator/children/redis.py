"""The managed Redis: a StatefulSet of the official Redis 8 image (Query Engine
included), a headless Service, and a Secret holding a generated password."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from iccache_operator import api
from iccache_operator.children.common import (
    REDIS_PORT,
    RESTRICTED_CONTAINER,
    Owner,
    SpecError,
    resources,
)

PASSWORD_KEY = "password"
COMPONENT = "redis"
SECRET_VERSION_ANNOTATION = "iccache.dev/password-version"
MAXMEMORY_SHARE = 0.8  # of the container's memory limit: room for the AOF rewrite's fork
_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity_bytes(quantity: int | str) -> int:
    """A Kubernetes memory quantity ("512Mi", "1G", "1073741824") in bytes."""
    text = str(quantity).strip()
    digits = text.rstrip("kMGTi")
    unit = text[len(digits) :]
    try:
        return int(float(digits) * _UNITS[unit])
    except (KeyError, ValueError):
        raise SpecError(
            f"cache.managed.resources.limits.memory {text!r} is not a memory quantity "
            "(for example 512Mi or 2Gi)"
        ) from None


def memory_args(spec: api.ManagedRedis) -> list[str]:
    """With a memory limit, Redis keeps under most of it: when full it evicts what has a
    TTL (decisions kept for feedback, rate counters) and refuses new examples (the
    routers log and skip admission; answers and reads go on) rather than be killed by
    the kernel with the whole cache in memory."""
    limit = spec.resources.limits.get("memory")
    if limit is None:
        return []
    ceiling = int(quantity_bytes(limit) * MAXMEMORY_SHARE)
    return ["--maxmemory", str(ceiling), "--maxmemory-policy", "volatile-lru"]


def new_password() -> str:
    return secrets.token_urlsafe(32)


def redis_secret(owner: Owner, password: str) -> dict[str, Any]:
    """Created once; the operator never replaces an existing password."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": owner.metadata("redis-auth", COMPONENT),
        "type": "Opaque",
        "data": {PASSWORD_KEY: base64.b64encode(password.encode()).decode()},
    }


def redis_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": owner.metadata("redis", COMPONENT),
        "spec": {
            "clusterIP": "None",
            "selector": owner.selector(COMPONENT),
            "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
        },
    }


def redis_statefulset(
    owner: Owner, spec: api.ManagedRedis, password_version: str = ""
) -> dict[str, Any]:
    """``password_version`` (the password Secret's resourceVersion) goes into the pod
    template: a rotated password restarts Redis with it (the data is on its claim)."""
    probe = {"exec": {"command": ["sh", "-c", 'redis-cli -a "$REDIS_PASSWORD" ping | grep PONG']}}
    claim: dict[str, Any] = {
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": str(spec.storage.size)}},
        },
    }
    if spec.storage.storage_class_name:
        claim["spec"]["storageClassName"] = spec.storage.storage_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": owner.metadata("redis", COMPONENT),
        "spec": {
            "serviceName": owner.child("redis"),
            "replicas": 1,
            "selector": {"matchLabels": owner.selector(COMPONENT)},
            "template": {
                "metadata": {
                    "labels": owner.labels(COMPONENT),
                    **(
                        {"annotations": {SECRET_VERSION_ANNOTATION: password_version}}
                        if password_version
                        else {}
                    ),
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsUser": 999,
                        "runAsGroup": 999,
                        "fsGroup": 999,
                        "runAsNonRoot": True,
                    },
                    "containers": [
                        {
                            "name": "redis",
                            "image": spec.image,
                            "args": [
                                "--requirepass",
                                "$(REDIS_PASSWORD)",
                                "--appendonly",
                                "yes",
                                "--dir",
                                "/data",
                                *memory_args(spec),
                            ],
                            "env": [
                                {
                                    "name": "REDIS_PASSWORD",
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": owner.child("redis-auth"),
                                            "key": PASSWORD_KEY,
                                        }
                                    },
                                }
                            ],
                            "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
                            "securityContext": RESTRICTED_CONTAINER,
                            "resources": resources(spec.resources),
                            "readinessProbe": {**probe, "periodSeconds": 5},
                            "livenessProbe": {**probe, "periodSeconds": 15},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                },
            },
            "volumeClaimTemplates": [claim],
        },
    }
