"""kopf handlers: thin. Read the spec, plan the children, apply, observe, write status.

Run with ``kopf run -m iccache_operator.handlers --all-namespaces`` (or ``--namespace``).
A timer reconciles every 20 s as well, which restores children deleted or edited by
hand and keeps the status current.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic.exceptions import DynamicApiError
from pydantic import ValidationError

from iccache_operator import api
from iccache_operator.children import redis, replay, router
from iccache_operator.children.common import MANAGER, Owner, SpecError
from iccache_operator.kube import Kube, KubeError
from iccache_operator.plan import (
    PRUNED_KINDS,
    Plan,
    plan,
    referenced_claims,
    referenced_secrets,
    retained_claims,
    unplanned,
)
from iccache_operator.quality import read_reports, running_addresses
from iccache_operator.status import (
    Observed,
    Replicas,
    compute_conditions,
    last_replay,
    merge_conditions,
    quality_status,
    with_kstatus,
)

DEFAULT_SIDECAR_IMAGE = "ghcr.io/iccache/sidecar:0.1.0"
# The referenced Secrets the routers read once, at start (as environment variables): a
# new version of one rolls them. The API keys file is mounted and reloaded live, and a
# hub token is read only when a model's weights are fetched.
READ_AT_START = frozenset(
    {
        "spec.models.small.apiKeySecretRef",
        "spec.models.large.apiKeySecretRef",
        "spec.cache.external.passwordSecretRef",
        "spec.tenancy.gatewaySecretRef",
        "spec.tenancy.adminSecretRef",
    }
)
RESYNC_SECONDS = 20.0


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """The composition root: one API client and the configuration, kept in memo."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=api.GROUP)
    settings.posting.level = logging.INFO
    # No runtime watching of CRDs and namespaces: the chart installs the CRD before the
    # operator starts, and this keeps RBAC to the watched namespaces (no cluster-wide
    # read of CRDs or namespaces). After a CRD upgrade, restart the operator.
    settings.scanning.disabled = True
    # The resync timer makes kopf hold a finalizer. A deletion that arrives while a
    # reconcile runs waits for it to end, and kopf looks again only every
    # cancellation_polling seconds (60 by default), so `kubectl delete` took over a minute.
    settings.background.cancellation_polling = 1.0
    memo.kube = await Kube.connect()
    memo.sidecar_image = os.environ.get("ICCACHE_SIDECAR_IMAGE", DEFAULT_SIDECAR_IMAGE)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.kube.close()


@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
@kopf.timer(api.GROUP, api.VERSION, api.PLURAL, interval=RESYNC_SECONDS, initial_delay=5)
async def reconcile(
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    body: kopf.Body,
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    kube: Kube = memo.kube
    generation = int(meta.get("generation") or 0)
    old_conditions = list(status.get("conditions") or [])
    try:
        parsed = api.InContextCacheSpec.model_validate(dict(spec))
        owner = Owner(str(meta["name"]), str(meta["namespace"]), str(meta["uid"]))
        redis_version = await _managed_password(kube, owner, parsed)
        problems, versions = await _secrets(kube, owner, parsed)
        # A changed Secret the routers read at start rolls them (the managed Redis's
        # password: Redis and the routers).
        if redis_version:
            versions = ",".join(filter(None, (versions, f"redis-auth@{redis_version}")))
        wanted = plan(owner, parsed, memo.sidecar_image, versions, redis_version)
    except (ValidationError, SpecError) as exc:
        _write_status(patch, old_conditions, _unusable(str(exc)), generation)
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc

    for field, claim in referenced_claims(parsed):
        if await kube.get("v1", "PersistentVolumeClaim", claim, owner.namespace) is None:
            problems.append(f"{field}: PersistentVolumeClaim {claim!r} not found")
    try:
        for manifest in wanted.create_only:
            if await kube.create_if_missing(manifest):
                logger.info("created %s %s", manifest["kind"], manifest["metadata"]["name"])
        for manifest in wanted.apply:
            await kube.apply(manifest)
        await _prune(kube, owner, wanted, logger)
        retained = [
            f"PersistentVolumeClaim {claim}: the managed Redis's data, kept when the cache "
            "became external (delete it to free its volume)"
            for claim in retained_claims(owner, parsed)
            if await kube.get("v1", "PersistentVolumeClaim", claim, owner.namespace)
        ]
        observed = await _observe(kube, owner, parsed, problems)
    except (ApiException, DynamicApiError, KubeError) as exc:
        raise kopf.TemporaryError(f"Kubernetes API error, retrying: {exc}", delay=10) from exc

    conditions = compute_conditions(observed)
    _announce(body, old_conditions, conditions)
    _write_status(patch, old_conditions, conditions, generation, observed, owner, parsed)
    patch.status["retained"] = retained


async def _managed_password(kube: Kube, owner: Owner, spec: api.InContextCacheSpec) -> str:
    """The managed Redis's password Secret, made first (so that its first version is
    the one Redis starts with); its resourceVersion, or "" without a managed Redis."""
    if spec.cache.mode != "managed":
        return ""
    await kube.create_if_missing(redis.redis_secret(owner, redis.new_password()))
    secret = await kube.get("v1", "Secret", owner.child("redis-auth"), owner.namespace)
    return str((secret or {}).get("metadata", {}).get("resourceVersion", ""))


async def _secrets(kube: Kube, owner: Owner, spec: api.InContextCacheSpec) -> tuple[list[str], str]:
    """The referenced Secrets that are missing (as problems), and the versions of those
    the routers read at start (for the pods' config hash)."""
    problems, versions = [], []
    for field, name, key in referenced_secrets(spec):
        secret = await kube.get("v1", "Secret", name, owner.namespace)
        if secret is None or key not in (secret.get("data") or {}):
            problems.append(f"{field}: Secret {name!r} with key {key!r} not found")
        elif field in READ_AT_START:
            versions.append(f"{name}@{secret['metadata'].get('resourceVersion', '')}")
    return problems, ",".join(sorted(versions))


async def _prune(kube: Kube, owner: Owner, wanted: Plan, logger: kopf.Logger) -> None:
    """Delete the children this resource controls that its plan no longer has (a model
    made external, a managed Redis switched to an external one). Claims and the Redis
    password are never deleted: they hold data."""
    labels = {"app.kubernetes.io/instance": owner.name, "app.kubernetes.io/managed-by": MANAGER}
    for api_version, kind in PRUNED_KINDS:
        found = await kube.list_objects(api_version, kind, owner.namespace, labels)
        for name in unplanned(wanted, kind, found, owner.uid):
            if await kube.delete(api_version, kind, name, owner.namespace):
                logger.info("pruned %s %s: no longer in the spec", kind, name)


async def _observe(
    kube: Kube, owner: Owner, spec: api.InContextCacheSpec, problems: list[str]
) -> Observed:
    async def replicas(kind: str, part: str) -> Replicas:
        found = await kube.get("apps/v1", kind, owner.child(part), owner.namespace)
        if found is None:
            return Replicas(1, 0)
        return Replicas(
            int(found["spec"].get("replicas", 1)),
            int((found.get("status") or {}).get("readyReplicas") or 0),
        )

    async def model(role: str) -> Replicas | None:
        external = getattr(spec.models, role).engine == "external"
        return None if external else await replicas("Deployment", role)

    cron = await kube.get("batch/v1", "CronJob", owner.child("replay"), owner.namespace)
    replay_pods = await kube.list_objects(
        "v1", "Pod", owner.namespace, owner.labels(replay.COMPONENT)
    )
    router_pods = await kube.list_objects(
        "v1", "Pod", owner.namespace, owner.labels(router.COMPONENT)
    )
    addresses = running_addresses(router_pods)
    return Observed(
        small=await model("small"),
        large=await model("large"),
        redis=await replicas("StatefulSet", "redis") if spec.cache.mode == "managed" else None,
        router=await replicas("Deployment", "router"),
        cronjob=cron is not None,
        replay_suspended=bool(cron and cron["spec"].get("suspend")),
        problems=problems,
        last_replay=last_replay(replay_pods),
        routers_running=len(addresses),
        quality=await read_reports(addresses, spec.router.http_port),
    )


def _unusable(message: str) -> list[dict[str, str]]:
    return [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": message}]


def _announce(body: kopf.Body, old: list[dict[str, Any]], new: list[dict[str, str]]) -> None:
    """An event when readiness changes, for `kubectl describe`."""
    before = {c.get("type"): c.get("status") for c in old}
    for c in new:
        if c["type"] == "Ready" and before.get("Ready") != c["status"]:
            if c["status"] == "True":
                kopf.info(body, reason="Ready", message="all parts are ready")
            else:
                kopf.warn(body, reason=c["reason"], message=c["message"])


def _write_status(
    patch: kopf.Patch,
    old: list[dict[str, Any]],
    conditions: list[dict[str, str]],
    generation: int,
    observed: Observed | None = None,
    owner: Owner | None = None,
    spec: api.InContextCacheSpec | None = None,
) -> None:
    """The one place status is written."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = merge_conditions(old, with_kstatus(conditions), generation, now)
    if observed is not None and owner is not None and spec is not None:
        for role in ("small", "large"):
            r: Replicas | None = getattr(observed, role)
            patch.status[role] = {
                "replicas": r.desired if r else 0,
                "readyReplicas": r.ready if r else 0,
            }
        if observed.last_replay is not None:
            patch.status["replay"] = observed.last_replay
        if observed.routers_running:
            patch.status["quality"] = quality_status(
                observed.routers_running, observed.quality, now
            )
        host = owner.service_host("router")
        patch.status["endpoints"] = {
            "http": f"http://{host}:{spec.router.http_port}/v1",
            "grpc": f"{host}:{spec.router.grpc_port}",
        }
