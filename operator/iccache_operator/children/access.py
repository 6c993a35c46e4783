"""The ServiceAccount of the router and replay pods, and the NetworkPolicy that lets
only them reach the managed Redis."""

from __future__ import annotations

from typing import Any

from iccache_operator.children.common import REDIS_PORT, Owner


def service_account(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": owner.metadata("iccache", "router"),
        "automountServiceAccountToken": False,
    }


def redis_network_policy(owner: Owner) -> dict[str, Any]:
    peers = [
        {"podSelector": {"matchLabels": owner.selector(component)}}
        for component in ("router", "replay")
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": owner.metadata("redis", "redis"),
        "spec": {
            "podSelector": {"matchLabels": owner.selector("redis")},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": REDIS_PORT}]}],
        },
    }
