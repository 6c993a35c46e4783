"""Compute everything an InContextCache should own (pure: spec in, manifests out)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from iccache_operator import api
from iccache_operator.children import access, models, redis, replay, router
from iccache_operator.children.common import Owner


@dataclass(frozen=True)
class Plan:
    apply: list[dict[str, Any]]  # server-side applied on every reconcile
    create_only: list[dict[str, Any]] = field(default_factory=list)  # never overwritten
    config_hash: str = ""
    settings_yaml: str = ""


def plan(
    owner: Owner,
    spec: api.InContextCacheSpec,
    sidecar_image: str,
    secrets_version: str = "",
    redis_password_version: str = "",
) -> Plan:
    """``secrets_version`` names the versions of the Secrets the routers read at start;
    it goes into the pods' config hash, so a rotated Secret rolls them.
    ``redis_password_version`` does the same for the managed Redis's own password."""
    settings_yaml = router.render_settings(router.router_settings(owner, spec))
    digest = router.config_hash(settings_yaml + (f"\n{secrets_version}" if secrets_version else ""))
    image = spec.router.image or sidecar_image
    children: list[dict[str, Any]] = [access.service_account(owner)]
    for role in ("small", "large"):
        model: api.ModelSpec = getattr(spec.models, role)
        if model.engine != "external":
            children += [
                models.model_deployment(owner, role, model, image),
                models.model_service(owner, role),
                access.model_network_policy(owner, role),
            ]
    create_only = []
    if spec.cache.mode == "managed":
        children += [
            redis.redis_statefulset(owner, spec.cache.managed, redis_password_version),
            redis.redis_service(owner),
            access.redis_network_policy(owner),
        ]
        create_only.append(redis.redis_secret(owner, redis.new_password()))
    children += [
        router.router_configmap(owner, settings_yaml),
        router.router_deployment(owner, spec, image, digest),
        router.router_service(owner, spec),
        *([policy] if (policy := access.router_network_policy(owner, spec)) else []),
        replay.replay_cronjob(owner, spec, image, digest),
    ]
    return Plan(children, create_only, digest, settings_yaml)


# Every kind of child the operator applies, as (apiVersion, kind): what pruning looks at.
# Secrets are not among them: the one the operator makes is the managed Redis's
# password, which stays with the Redis data (its claim) when Redis is dropped.
PRUNED_KINDS = (
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)


def unplanned(wanted: Plan, kind: str, found: Iterable[dict[str, Any]], uid: str) -> list[str]:
    """Names of the children of one kind (found by this resource's labels) that this
    resource controls and the plan no longer has: what to delete. An object of the same
    name that another owner controls is never touched."""
    planned = {
        m["metadata"]["name"] for m in [*wanted.apply, *wanted.create_only] if m["kind"] == kind
    }
    out = []
    for obj in found:
        meta = obj.get("metadata") or {}
        refs = meta.get("ownerReferences") or []
        if not any(r.get("uid") == uid and r.get("controller") for r in refs):
            continue
        if meta.get("name") not in planned:
            out.append(str(meta["name"]))
    return sorted(out)


def retained_claims(owner: Owner, spec: api.InContextCacheSpec) -> list[str]:
    """The claims a managed Redis of this resource would have: kept (never pruned) when
    the cache is switched to an external Redis, and named in the status."""
    if spec.cache.mode == "managed":
        return []
    return [f"data-{owner.child('redis')}-0"]


def referenced_secrets(spec: api.InContextCacheSpec) -> list[tuple[str, str, str]]:
    """(field, secret name, key) for every Secret the spec points at."""
    refs = []
    for role in ("small", "large"):
        model: api.ModelSpec = getattr(spec.models, role)
        if model.api_key_secret_ref:
            ref = model.api_key_secret_ref
            refs.append((f"spec.models.{role}.apiKeySecretRef", ref.name, ref.key))
        hub = model.source.hub if model.source else None
        if hub and hub.token_secret_ref:
            ref = hub.token_secret_ref
            refs.append((f"spec.models.{role}.source.hub.tokenSecretRef", ref.name, ref.key))
    if spec.cache.external and spec.cache.external.password_secret_ref:
        ref = spec.cache.external.password_secret_ref
        refs.append(("spec.cache.external.passwordSecretRef", ref.name, ref.key))
    t = spec.tenancy
    for name, tenancy_ref in (
        ("apiKeysSecretRef", t.api_keys_secret_ref if t.mode == "api-keys" else None),
        ("gatewaySecretRef", t.gateway_secret_ref if t.mode == "gateway" else None),
        ("adminSecretRef", t.admin_secret_ref),
    ):
        if tenancy_ref:
            refs.append((f"spec.tenancy.{name}", tenancy_ref.name, tenancy_ref.key))
    return refs


def referenced_claims(spec: api.InContextCacheSpec) -> list[tuple[str, str]]:
    """(field, claim name) for every PersistentVolumeClaim a model source reads."""
    claims = []
    for role in ("small", "large"):
        source = getattr(spec.models, role).source
        if source is not None and source.pvc is not None:
            claims.append((f"spec.models.{role}.source.pvc", source.pvc.claim_name))
    return claims
