"""``GET /quality``: the quality budget as this router process sees it, for the operator's
``status.quality`` (and for people). Unauthenticated, like ``/metrics``: it holds
figures and tenant names, no requests or answers."""

from __future__ import annotations

from fastapi import FastAPI

from iccache_contract import names
from iccache_contract.quality import QualityReport, ScopeQuality
from iccache_dataplane.requestpath.quality import BudgetStatus, QualityBudget


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


def add_quality_route(app: FastAPI, budget: QualityBudget) -> None:
    @app.get(names.QUALITY_PATH)
    async def quality() -> QualityReport:
        return report(budget)
