"""The managed Redis: a StatefulSet of the official Redis 8 image (Query Engine
included), a headless Service, and a Secret holding a generated password."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from iccache_operator import api
from iccache_operator.children.common import REDIS_PORT, RESTRICTED_CONTAINER, Owner, resources

PASSWORD_KEY = "password"
COMPONENT = "redis"


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


def redis_statefulset(owner: Owner, spec: api.ManagedRedis) -> dict[str, Any]:
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
                "metadata": {"labels": owner.labels(COMPONENT)},
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
