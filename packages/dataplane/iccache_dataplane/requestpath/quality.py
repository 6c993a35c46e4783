"""The quality budget of one router process: judged small answers, the loss estimate
and the routing bar's offset, overall and for each tenant with a budget of its own.

Outcomes come from shadow comparisons and from explicit feedback on small answers (a
score below 0.5 is a loss). Each process keeps its own window: with several replicas
each sees its share of the outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

from iccache_contract.quality import z_score
from iccache_contract.settings import QualitySettings
from iccache_dataplane.core.quality_budget import (
    LossEstimate,
    LossWindow,
    Steering,
    SteeringRules,
    steer,
)
from iccache_dataplane.metrics import Metrics

OVERALL = "*"  # every tenant without a budget of its own


@dataclass(frozen=True)
class BudgetStatus:
    scope: str  # OVERALL or a tenant
    max_loss: float | None
    estimate: LossEstimate
    offset: float
    small_answers: int = 0  # answered by this process since it started
    large_answers: int = 0

    @property
    def holds(self) -> bool | None:
        return None if self.max_loss is None else self.estimate.within(self.max_loss)


class QualityBudget:
    def __init__(self, settings: QualitySettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.z = z_score(settings.confidence)
        self._windows: dict[str, LossWindow] = {}
        self._steering: dict[str, Steering] = {}
        self._answers: dict[str, dict[bool, int]] = {}  # scope -> small? -> count

    def answered(self, tenant: str, small: bool) -> None:
        """Count a model's answer (the offload ratio in the status)."""
        counts = self._answers.setdefault(self.scope(tenant), {True: 0, False: 0})
        counts[small] += 1

    def scope(self, tenant: str) -> str:
        return tenant if tenant in self.settings.tenants else OVERALL

    def offset(self, tenant: str) -> float:
        """Added to the routing bar for this tenant's requests."""
        return self._steering.get(self.scope(tenant), Steering()).offset

    def record(self, tenant: str, margin: float, lost: bool) -> BudgetStatus:
        scope = self.scope(tenant)
        window = self._windows.setdefault(scope, LossWindow(self.settings.window))
        window.add(margin, lost)
        state = self._steering.get(scope, Steering())
        budget = self.settings.budget(tenant)
        if budget is not None:
            rules = SteeringRules(
                max_loss=budget,
                step=self.settings.step,
                hold=self.settings.hold,
                min_samples=self.settings.min_samples,
            )
            state = steer(state, window.estimate(self.z, state.offset), window.total, rules)
            self._steering[scope] = state
        status = self._status(scope)
        self._publish(status, lost)
        return status

    def _status(self, scope: str) -> BudgetStatus:
        state = self._steering.get(scope, Steering())
        window = self._windows.get(scope) or LossWindow(self.settings.window)
        counts = self._answers.get(scope, {True: 0, False: 0})
        return BudgetStatus(
            scope,
            self.settings.budget(scope),
            window.estimate(self.z, state.offset),
            state.offset,
            counts[True],
            counts[False],
        )

    def statuses(self) -> list[BudgetStatus]:
        """Every scope with an outcome or an answer, and every scope with a budget."""
        scopes = set(self._windows) | set(self._answers) | set(self.settings.tenants)
        if self.settings.max_loss is not None:
            scopes.add(OVERALL)
        return [self._status(scope) for scope in sorted(scopes)]

    def _publish(self, status: BudgetStatus, lost: bool) -> None:
        m, scope = self.metrics, status.scope
        m.quality_outcomes.labels(scope, "loss" if lost else "no_loss").inc()
        m.quality_loss.labels(scope).set(status.estimate.rate)
        m.quality_loss_upper.labels(scope).set(status.estimate.upper)
        m.quality_samples.labels(scope).set(status.estimate.samples)
        m.quality_bar_offset.labels(scope).set(status.offset)
        if status.max_loss is not None:
            m.quality_max_loss.labels(scope).set(status.max_loss)
