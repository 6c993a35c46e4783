"""Status from what the children report (pure): conditions in metav1.Condition shape."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from iccache_contract import names
from iccache_contract.quality import QualityReport, pooled
from iccache_operator import api

CONDITION_TYPES = ("ModelsReady", "CacheReady", "RouterReady", "ReplayScheduled", "Ready")


@dataclass(frozen=True)
class Replicas:
    desired: int
    ready: int

    @property
    def ok(self) -> bool:
        return self.ready >= self.desired


@dataclass(frozen=True)
class Observed:
    small: Replicas | None  # None: external model
    large: Replicas | None
    redis: Replicas | None  # None: external Redis
    router: Replicas
    cronjob: bool
    replay_suspended: bool = False
    problems: list[str] = field(default_factory=list)  # spec fine for the schema, unusable
    last_replay: dict[str, str] | None = None  # status.replay, from the job's pods
    routers_running: int = 0  # router pods with an address
    quality: list[QualityReport] = field(default_factory=list)  # what they reported


def last_replay(pods: list[dict[str, Any]]) -> dict[str, str] | None:
    """``status.replay`` from the replay job's pods: the newest finished container's
    termination message, where ``iccache replay`` writes its summary as JSON."""
    newest: dict[str, Any] | None = None
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (container.get("state") or {}).get("terminated")
            finished = (ended or {}).get("finishedAt")
            if finished and (newest is None or finished > newest["finishedAt"]):
                newest = ended
    if newest is None:
        return None
    message = (newest.get("message") or "").strip()
    try:
        result = str(json.loads(message)[names.SUMMARY_LINE])
    except (ValueError, KeyError, TypeError):
        code = newest.get("exitCode")
        result = f"exit code {code}" + (f": {message[-200:]}" if message else "")
    return {"lastRunTime": newest["finishedAt"], "lastResult": result[:1024]}


def _condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}


def compute_conditions(o: Observed) -> list[dict[str, str]]:
    not_ready = [
        f"{name} {r.ready}/{r.desired} ready"
        for name, r in (("small model", o.small), ("large model", o.large))
        if r is not None and not r.ok
    ]
    models = _condition(
        "ModelsReady",
        not not_ready,
        "ReplicasReady" if not not_ready else "ReplicasNotReady",
        "; ".join(not_ready) or "model servers ready (external ones are not checked)",
    )
    if o.redis is None:
        cache = _condition("CacheReady", True, "External", "using an external Redis")
    else:
        cache = _condition(
            "CacheReady",
            o.redis.ok and o.redis.desired > 0,
            "RedisReady" if o.redis.ok else "RedisNotReady",
            f"managed Redis {o.redis.ready}/{o.redis.desired} ready",
        )
    router = _condition(
        "RouterReady",
        o.router.ok and (o.router.ready > 0 or o.router.desired == 0),
        "ReplicasReady" if o.router.ok else "ReplicasNotReady",
        f"router {o.router.ready}/{o.router.desired} ready",
    )
    replay = _condition(
        "ReplayScheduled",
        o.cronjob,
        "Suspended" if o.replay_suspended else ("Scheduled" if o.cronjob else "Missing"),
        "replay CronJob present" + (" (suspended)" if o.replay_suspended else ""),
    )
    parts = [models, cache, router]
    if o.problems:
        ready = _condition("Ready", False, "InvalidReference", "; ".join(o.problems))
    else:
        waiting = [c["type"] for c in parts if c["status"] != "True"]
        ready = _condition(
            "Ready",
            not waiting,
            "AllReady" if not waiting else "Waiting",
            "all parts ready" if not waiting else "waiting for " + ", ".join(waiting),
        )
    return [models, cache, router, replay, ready]


# Ready's reasons that waiting will not fix: the spec, or what it refers to, must change.
STUCK_REASONS = frozenset({"InvalidSpec", "InvalidReference"})


def with_kstatus(conditions: list[dict[str, str]]) -> list[dict[str, str]]:
    """Add the ``Reconciling`` and ``Stalled`` conditions that kstatus (Flux's health
    checks, kpt, ``kubectl wait`` users) reads, derived from ``Ready``: reconciling while
    parts are still coming up, stalled while the spec or a reference is wrong. Without
    them kstatus calls a resource whose Ready is False "Current"."""
    ready = next(c for c in conditions if c["type"] == "Ready")
    waiting = ready["status"] != "True"
    stuck = waiting and ready["reason"] in STUCK_REASONS
    return [
        *conditions,
        _condition(
            "Reconciling",
            waiting and not stuck,
            ready["reason"] if waiting and not stuck else "Reconciled",
            ready["message"] if waiting and not stuck else "",
        ),
        _condition(
            "Stalled",
            stuck,
            ready["reason"] if stuck else "NotStalled",
            ready["message"] if stuck else "",
        ),
    ]


def merge_conditions(
    old: list[dict[str, Any]], new: list[dict[str, str]], generation: int, now: str
) -> list[dict[str, Any]]:
    """Keep lastTransitionTime when a condition's status did not change."""
    previous = {c.get("type"): c for c in old or []}
    out = []
    for c in new:
        before = previous.get(c["type"])
        changed = before is None or before.get("status") != c["status"]
        out.append(
            {
                **c,
                "observedGeneration": generation,
                "lastTransitionTime": now if changed else before["lastTransitionTime"],  # type: ignore[index]
            }
        )
    return out


def quality_status(routers: int, reports: list[QualityReport], now: str) -> dict[str, Any]:
    """``status.quality`` from what the routers reported, in the CRD's shape."""
    scopes = [
        api.ScopeQualityStatus(
            scope=s.scope,
            max_loss=s.max_loss,
            samples=s.samples,
            losses=s.losses,
            loss=s.loss,
            upper=s.upper,
            offload_ratio=_share(s.small_answers, s.small_answers + s.large_answers),
            bar_offset=s.bar_offset,
            holds=s.holds,
        )
        for s in pooled(reports)
    ]
    status = api.QualityStatus(
        routers=routers, routers_reporting=len(reports), last_update_time=now, scopes=scopes
    )
    return status.model_dump(by_alias=True, exclude_none=True)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
