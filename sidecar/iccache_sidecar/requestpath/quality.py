"""The quality budget of the routers of one cache: judged small answers, the loss
estimate and the routing bar's offset, overall and for each tenant with a budget of its
own.

Outcomes come from shadow comparisons and from explicit feedback on small answers (a
score below 0.5 is a loss). With an :class:`OutcomeStore` (Redis, in a deployment) every
router process adds its outcomes to one shared window per scope and steers one shared
offset, so replicas and workers see the same estimate, from all of their outcomes, and
move the bar together. In the pooled scope ("*", every tenant without a budget of its
own) no tenant's outcomes make more than ``tenant_share`` of the window while another
tenant has some: one tenant's feedback, true or false, moves the others' bar by a
bounded amount (a tenant that needs its own bar gets a budget of its own). The process
keeps a copy: the hot path reads the offset from it, and it is refreshed from the store
on every outcome and every few seconds. Without
the store (or while it is down) the process goes on with its own copy alone.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from iccache_contract.quality import z_score
from iccache_contract.settings import QualitySettings
from iccache_sidecar.core.errors import DependencyDown
from iccache_sidecar.core.quality_budget import (
    LossEstimate,
    LossWindow,
    Steering,
    SteeringRules,
    steer,
)
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.ports import OutcomeStore

OVERALL = "*"  # every tenant without a budget of its own

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BudgetStatus:
    scope: str  # OVERALL or a tenant
    max_loss: float | None
    estimate: LossEstimate
    offset: float
    small_answers: int = 0  # by the routers sharing the window (this process without one)
    large_answers: int = 0
    window: str | None = None  # the shared window's name; None: this process's own

    @property
    def holds(self) -> bool | None:
        return None if self.max_loss is None else self.estimate.within(self.max_loss)


class QualityBudget:
    def __init__(
        self, settings: QualitySettings, metrics: Metrics, store: OutcomeStore | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store = store
        self.z = z_score(settings.confidence)
        self._windows: dict[str, LossWindow] = {}
        self._steering: dict[str, Steering] = {}
        self._answers: dict[str, dict[bool, int]] = {}  # scope -> small? -> count
        self._unsent: dict[str, dict[bool, int]] = {}  # answers not yet added to the store
        self._unstored: dict[str, deque[tuple[str, float, bool]]] = {}  # outcomes, likewise
        self._shown: dict[str, bool] = {}  # scope -> enough judged answers at its bar
        for status in self.statuses():  # every budget on the dashboard from the start
            self._publish_gauges(status)
            for result in ("loss", "no_loss"):
                metrics.quality_outcomes.labels(status.scope, result)

    def answered(self, tenant: str, small: bool) -> None:
        """Count a model's answer (the offload ratio in the status); sent to the store
        with the next refresh."""
        scope = self.scope(tenant)
        for counts in (self._answers, self._unsent):
            counts.setdefault(scope, {True: 0, False: 0})[small] += 1

    def scope(self, tenant: str) -> str:
        return tenant if tenant in self.settings.tenants else OVERALL

    def offset(self, tenant: str) -> float:
        """Added to the routing bar for this tenant's requests."""
        return self._steering.get(self.scope(tenant), Steering()).offset

    def unproven(self, tenant: str) -> bool:
        """Whether the tenant's scope has a budget not shown to hold: its estimate, at
        the current bar, counts fewer than ``min_samples`` judged answers, or its upper
        bound is above ``max_loss`` (kept up to date on every outcome and refresh, so
        that this costs nothing on the hot path)."""
        scope = self.scope(tenant)
        return self.settings.budget(tenant) is not None and not self._shown.get(scope, False)

    def _note_evidence(self, scope: str) -> None:
        budget = self.settings.budget(scope)
        if budget is None:
            return
        state = self._steering.get(scope, Steering())
        estimate = self._window(scope).estimate(self.z, state.offset)
        self._shown[scope] = estimate.samples >= self.settings.min_samples and estimate.within(
            budget
        )

    async def record(self, tenant: str, margin: float, lost: bool) -> BudgetStatus:
        scope = self.scope(tenant)
        window = self._window(scope)
        window.add(margin, lost, tenant)
        shared = await self._share(scope, tenant, margin, lost)
        state = self._steering.get(scope, Steering())
        budget = self.settings.budget(tenant)
        if budget is not None:
            rules = SteeringRules(
                max_loss=budget,
                step=self.settings.step,
                hold=self.settings.hold,
                min_samples=self.settings.min_samples,
            )
            moved = steer(state, window.estimate(self.z, state.offset), window.total, rules)
            if moved != state and shared and self.store is not None:
                try:
                    moved = await self.store.move(scope, state, moved)
                except DependencyDown as exc:
                    log.warning("quality budget: the bar moved here only: %s", exc)
            self._steering[scope] = moved
        self._note_evidence(scope)
        status = self._status(scope)
        self._publish(status, lost)
        return status

    async def _share(self, scope: str, tenant: str, margin: float, lost: bool) -> bool:
        """Add the outcome to the shared window and take the window and the steering
        back (other routers' outcomes included); False when there is no store or it
        failed (the local copy goes on alone)."""
        if self.store is None:
            return False
        kept = self._unstored.setdefault(scope, deque(maxlen=self.settings.window))
        kept.append((tenant, margin, lost))
        try:
            await self._store_and_pull(scope)
        except DependencyDown as exc:
            log.warning("quality budget: outcome kept here until redis is back: %s", exc)
            return False
        return True

    async def _store_and_pull(self, scope: str) -> None:
        """Send the outcomes not yet in the store (this one, and any kept while it was
        down), then take the shared window and offset back."""
        assert self.store is not None
        unstored = self._unstored.get(scope)
        while unstored:
            tenant, margin, lost = unstored.popleft()  # taken first: another task may too
            try:
                await self.store.add(scope, tenant, margin, lost, self.settings.window)
            except DependencyDown:
                unstored.appendleft((tenant, margin, lost))
                raise
        await self._pull(scope)

    async def _pull(self, scope: str) -> None:
        assert self.store is not None
        sources, total = await self.store.window(scope, self.settings.window)
        if total or scope in self._windows:
            self._window(scope).replace(sources, total)
        steering = await self.store.steering(scope)
        if steering != Steering() or scope in self._steering:
            self._steering[scope] = steering

    async def refresh(self) -> None:
        """Take every scope's window and offset from the store, and send it the answers
        counted since the last refresh (raises DependencyDown when the store fails; the
        unsent answers are kept for the next one)."""
        if self.store is None:
            return
        scopes = set(self._windows) | set(self._answers) | set(self.settings.tenants)
        scopes.add(OVERALL)
        for scope in sorted(scopes | set(self._unstored)):
            await self._store_and_pull(scope)
            unsent = self._unsent.get(scope, {True: 0, False: 0})
            small, large = await self.store.count_answers(scope, unsent[True], unsent[False])
            self._unsent.pop(scope, None)
            if small or large or scope in self._answers:
                self._answers[scope] = {True: small, False: large}
            if scope in self._windows:
                self._note_evidence(scope)
                self._publish_gauges(self._status(scope))

    def _window(self, scope: str) -> LossWindow:
        if scope not in self._windows:
            self._windows[scope] = self._new_window(scope)
        return self._windows[scope]

    def _new_window(self, scope: str) -> LossWindow:
        """The pooled scope bounds each tenant's share of its window (see ``pooled``);
        a tenant's own scope holds its outcomes alone."""
        share = self.settings.tenant_share if scope == OVERALL else 1.0
        return LossWindow(self.settings.window, share)

    def _status(self, scope: str) -> BudgetStatus:
        state = self._steering.get(scope, Steering())
        window = self._windows.get(scope) or self._new_window(scope)
        counts = self._answers.get(scope, {True: 0, False: 0})
        return BudgetStatus(
            scope,
            self.settings.budget(scope),
            window.estimate(self.z, state.offset),
            state.offset,
            counts[True],
            counts[False],
            self.store.name if self.store is not None else None,
        )

    def statuses(self) -> list[BudgetStatus]:
        """Every scope with an outcome or an answer, and every scope with a budget."""
        scopes = set(self._windows) | set(self._answers) | set(self.settings.tenants)
        if self.settings.max_loss is not None:
            scopes.add(OVERALL)
        return [self._status(scope) for scope in sorted(scopes)]

    def _publish(self, status: BudgetStatus, lost: bool) -> None:
        self.metrics.quality_outcomes.labels(status.scope, "loss" if lost else "no_loss").inc()
        self._publish_gauges(status)

    def _publish_gauges(self, status: BudgetStatus) -> None:
        m, scope = self.metrics, status.scope
        m.quality_loss.labels(scope).set(status.estimate.rate)
        m.quality_loss_upper.labels(scope).set(status.estimate.upper)
        m.quality_samples.labels(scope).set(status.estimate.samples)
        m.quality_bar_offset.labels(scope).set(status.offset)
        if status.max_loss is not None:
            m.quality_max_loss.labels(scope).set(status.max_loss)
