"""Probes and figures: ``/healthz``, ``/readyz``, ``/metrics`` and ``/quality`` (the
quality budget as this router process sees it, for the operator's ``status.quality``).
Unauthenticated: they hold figures and tenant names, no requests or answers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iccache_contract import names
from iccache_contract.quality import QualityReport, ScopeQuality
from iccache_sidecar.api.http_errors import json_response
from iccache_sidecar.api.http_state import State
from iccache_sidecar.api.openai_models import Health, Readiness
from iccache_sidecar.metrics import merged_registry
from iccache_sidecar.requestpath.quality import BudgetStatus, QualityBudget

router = APIRouter()


@router.get(names.HEALTH_PATH)
async def healthz() -> Health:
    return Health()


@router.get(names.READY_PATH, response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: State) -> Response:
    load = state.service.load_snapshot()
    checks = {**state.status, "small": load.small.healthy, "large": load.large.healthy}
    ok = state.status.get("started", True) and (load.small.healthy or load.large.healthy)
    return json_response(Readiness(ready=ok, checks=checks), 200 if ok else 503)


@router.get(names.METRICS_PATH, response_class=PlainTextResponse)  # documented as text/plain
async def metrics(state: State) -> Response:
    registry = merged_registry() or state.service.metrics.registry  # merged: workers' too
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get(names.QUALITY_PATH)
async def quality(state: State) -> QualityReport:
    return report(state.service.budget)


def report(budget: QualityBudget) -> QualityReport:
    return QualityReport(
        confidence=budget.settings.confidence,
        scopes=[_scope(s) for s in budget.statuses()],
    )


def _scope(s: BudgetStatus) -> ScopeQuality:
    e = s.estimate
    return ScopeQuality(
        scope=s.scope,
        max_loss=s.max_loss,
        samples=e.samples,
        losses=e.losses,
        loss=round(e.rate, 6),
        lower=round(e.lower, 6),
        upper=round(e.upper, 6),
        bar_offset=s.offset,
        holds=s.holds,
        small_answers=s.small_answers,
        large_answers=s.large_answers,
        window=s.window,
    )
