"""Names, labels and ownership shared by every child of an InContextCache."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iccache_operator import api

MODEL_PORT = 8000
REDIS_PORT = 6379
MANAGER = "iccache-operator"


class SpecError(ValueError):
    """The spec passed the schema but cannot be built (a permanent error for the operator)."""


@dataclass(frozen=True)
class Owner:
    """The resource being reconciled, as children need to know it."""

    name: str
    namespace: str
    uid: str

    def child(self, part: str) -> str:
        """Deterministic child name, e.g. ``demo-router``."""
        return f"{self.name}-{part}"

    def labels(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "iccache",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": MANAGER,
        }

    def selector(self, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
        }

    def metadata(self, part: str, component: str | None = None) -> dict[str, Any]:
        return {
            "name": self.child(part),
            "namespace": self.namespace,
            "labels": self.labels(component or part),
            "ownerReferences": [
                {
                    "apiVersion": f"{api.GROUP}/{api.VERSION}",
                    "kind": api.KIND,
                    "name": self.name,
                    "uid": self.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }

    def service_host(self, part: str) -> str:
        return f"{self.child(part)}.{self.namespace}.svc"


def resources(spec: api.Resources) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.requests:
        out["requests"] = {k: str(v) for k, v in spec.requests.items()}
    if spec.limits:
        out["limits"] = {k: str(v) for k, v in spec.limits.items()}
    return out


# Model server images (vLLM, llama.cpp) run as root and write their caches under /root, so
# they keep their user but lose every capability and the means to gain more.
HARDENED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {**HARDENED_CONTAINER, "runAsNonRoot": True}
SIDECAR_USER = 10001  # the data-plane image's user and group
