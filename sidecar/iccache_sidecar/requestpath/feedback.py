"""Learning from a quality signal about a past request: the routing policy learns from
the request's features, and the examples it used learn whether they helped."""

from __future__ import annotations

import contextlib

from iccache_sidecar.core.domain import Candidate, Decision, Route
from iccache_sidecar.core.errors import DependencyDown, UnknownRequest
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.decisions import DecisionLog, DecisionRecord
from iccache_sidecar.requestpath.ports import ExampleIndex
from iccache_sidecar.requestpath.quality import QualityBudget
from iccache_sidecar.routing.base import RoutingPolicy

LOSS_BELOW = 0.5  # a score under this, on a small answer, counts against the quality budget


class Feedback:
    def __init__(
        self,
        decisions: DecisionLog,
        policy: RoutingPolicy,
        index: ExampleIndex | None,
        metrics: Metrics,
        budget: QualityBudget | None = None,
    ) -> None:
        self.decisions = decisions
        self.policy = policy
        self.index = index
        self.metrics = metrics
        self.budget = budget

    async def apply(
        self,
        request_id: str,
        score: float,
        tenant: str | None = None,
        source: str = "user",
        budget: bool = True,
        teach: bool = True,
    ) -> DecisionRecord:
        """Apply a score in [0, 1] to the decision of ``request_id``. ``tenant``, when
        given, must be the request's: another tenant learns that the id is unknown. Each
        source teaches once per request; the budget counts one verdict per request (none
        from this call when ``budget`` is False; ``teach`` False: nothing but the budget)."""
        record = await self.decisions.find(request_id)
        if record is None or (tenant is not None and tenant != record.tenant):
            raise UnknownRequest(f"no decision is known for request id {request_id!r}")
        self.metrics.feedback.labels(source).inc()
        if not await self.decisions.claim_verdict(request_id, f"learn-{source}"):
            self.metrics.feedback_repeated.labels(source).inc()
            return record
        if teach and record.features is not None:
            await self.policy.learn(record.features, record.route, score, record.tenant)
        small = record.route is Route.SMALL
        if small and budget and record.margin is not None:
            await self._count(request_id, record.tenant, record.margin, score)
        if teach and small and record.example_ids and self.index is not None:
            with contextlib.suppress(DependencyDown):
                await self.index.record_outcome(record.example_ids, score)
        return record

    async def small_outcome(
        self,
        decision: Decision,
        examples: list[Candidate],
        score: float,
        source: str = "probe",
        budget: bool = True,
        teach: bool = True,
    ) -> None:
        """Apply the outcome of a small answer that was not served: a probe's (the
        small model, with ``examples``, on a request held to the large model) or a draft
        that failed verification. It counts as the small arm's, in the budget (the
        request was offloadable at the bar) and for the examples."""
        self.metrics.feedback.labels(source).inc()
        if not await self.decisions.claim_verdict(decision.request_id, f"learn-{source}"):
            self.metrics.feedback_repeated.labels(source).inc()
            return
        if teach and decision.features is not None:
            await self.policy.learn(decision.features, Route.SMALL, score, decision.tenant)
        if budget and decision.margin is not None:
            await self._count(decision.request_id, decision.tenant, decision.margin, score)
        if teach and examples and self.index is not None:
            with contextlib.suppress(DependencyDown):
                await self.index.record_outcome([e.id for e in examples], score)

    async def _count(self, request_id: str, tenant: str, margin: float, score: float) -> None:
        """The first verdict on a request counts in the quality budget; later ones not."""
        if self.budget is not None and await self.decisions.claim_verdict(request_id, "budget"):
            await self.budget.record(tenant, margin, lost=score < LOSS_BELOW)
