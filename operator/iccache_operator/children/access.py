"""The ServiceAccount of the router and replay pods, and the NetworkPolicies: only they
reach the managed Redis and the managed models (so nobody skips the router's
authentication and limits by calling a model directly), and, when the spec names
allowed clients, only those (and the operator) reach the routers."""

from __future__ import annotations

from typing import Any

from iccache_operator import api
from iccache_operator.children.common import MODEL_PORT, REDIS_PORT, Owner

# The operator's pods (the chart's selector label): they read each router's /quality.
OPERATOR_POD = {"app.kubernetes.io/name": "iccache-operator"}


def service_account(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": owner.metadata("iccache", "router"),
        "automountServiceAccountToken": False,
    }


def _data_plane(owner: Owner) -> list[dict[str, Any]]:
    """The router and replay pods of this resource, as NetworkPolicy peers."""
    return [
        {"podSelector": {"matchLabels": owner.selector(component)}}
        for component in ("router", "replay")
    ]


def _ingress_policy(
    owner: Owner, part: str, component: str, peers: list[dict[str, Any]], ports: list[Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": owner.metadata(part, component),
        "spec": {
            "podSelector": {"matchLabels": owner.selector(component)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": p} for p in ports]}],
        },
    }


def redis_network_policy(owner: Owner) -> dict[str, Any]:
    return _ingress_policy(owner, "redis", "redis", _data_plane(owner), [REDIS_PORT])


def model_network_policy(owner: Owner, role: str) -> dict[str, Any]:
    return _ingress_policy(owner, role, f"model-{role}", _data_plane(owner), [MODEL_PORT])


def router_network_policy(owner: Owner, spec: api.InContextCacheSpec) -> dict[str, Any] | None:
    """None when the spec names no allowed clients (every pod may call the routers,
    which still authenticate them)."""
    clients = spec.router.allowed_clients
    if clients is None:
        return None
    operator = {"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_POD}}
    ports = [spec.router.http_port, spec.router.grpc_port]
    return _ingress_policy(owner, "router", "router", [*clients, operator], ports)
