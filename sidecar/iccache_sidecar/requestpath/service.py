"""The request path as one service: plan, generate, then after-response work.

Protocol-neutral: the HTTP and gRPC faces translate to and from these calls. Every step
degrades instead of failing: without Redis or the embedder a request goes straight to a
model; when the chosen model fails, the other one answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from iccache_contract.settings import RouterSettings, TenantLimits
from iccache_sidecar.core.domain import (
    Completion,
    Decision,
    Delta,
    LoadSnapshot,
    Reply,
    Route,
    RouterRequest,
    Usage,
    estimate_tokens,
)
from iccache_sidecar.core.prompting import prompt_tokens
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.aftercare import Aftercare
from iccache_sidecar.requestpath.decisions import DecisionLog, DecisionRecord
from iccache_sidecar.requestpath.degrade import CacheGate
from iccache_sidecar.requestpath.feedback import LOSS_BELOW, Feedback
from iccache_sidecar.requestpath.generation import Generator
from iccache_sidecar.requestpath.limits import InFlight
from iccache_sidecar.requestpath.opening import OpeningGate
from iccache_sidecar.requestpath.planning import Plan, Planner, load_snapshot
from iccache_sidecar.requestpath.ports import (
    Backends,
    Embedder,
    ExampleIndex,
    Judge,
    Limiter,
    OutcomeStore,
)
from iccache_sidecar.requestpath.quality import QualityBudget
from iccache_sidecar.requestpath.shadow import ShadowComparer
from iccache_sidecar.requestpath.verification import DraftCheck
from iccache_sidecar.routing.base import RoutingPolicy


class RouterService:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        embedder: Embedder | None,
        store: ExampleIndex | None,
        policy: RoutingPolicy,
        backends: Backends,
        metrics: Metrics,
        judge: Judge | None = None,
        limiter: Limiter | None = None,
        shadow: ShadowComparer | None = None,
        outcomes: OutcomeStore | None = None,
        check: DraftCheck | None = None,
    ) -> None:
        self.settings = settings
        self.check = check
        self.budget = QualityBudget(settings.routing.quality, metrics, outcomes)
        self.limiter = limiter
        self.store = store
        self.policy = policy
        self.backends = backends
        self.metrics = metrics
        self.in_flight = InFlight(settings.server.max_concurrency, metrics)
        decisions = DecisionLog(store)
        self.feedback_loop = Feedback(decisions, policy, store, metrics, self.budget)
        self.planner = Planner(
            settings,
            embedder=embedder,
            cache=CacheGate(store, settings.redis.retry_after_seconds, metrics),
            policy=policy,
            backends=backends,
            metrics=metrics,
            budget=self.budget,
        )
        self.generator = Generator(backends, metrics)
        self.aftercare = Aftercare(
            settings,
            index=store,
            backends=backends,
            metrics=metrics,
            decisions=decisions,
            feedback=self.feedback_loop,
            judge=judge,
            limiter=limiter,
            shadow=shadow,
            budget=self.budget,
            check=check,
        )
        self.opening = (
            OpeningGate(settings.opening, backends, self.generator, self.aftercare, metrics)
            if settings.opening.enabled
            else None
        )

    async def complete(self, req: RouterRequest) -> Completion:
        with self.in_flight.slot(req.tenant, _concurrent(req)):
            await self._within_limits(req)
            plan = await self.planner.plan(req)
            if plan.exact_answer is not None:
                return self.aftercare.exact_served(plan, req, plan.exact_answer)
            if self._opens(plan, req, streamed=False):
                assert self.opening is not None
                reply = await _collected(plan, self.opening.answer(plan, req))
            else:
                reply = await self.generator.complete(plan, req)
            if self.check is not None and self.check.gates and plan.decision.route is Route.SMALL:
                reply = await self._verified(plan, req, reply)
            self.aftercare.answered(plan, req, reply.text, reply.usage, reply.finish_reason)
            return Completion(
                reply.text, reply.finish_reason, reply.usage, plan.decision, reply.raw
            )

    def _opens(self, plan: Plan, req: RouterRequest, *, streamed: bool) -> bool:
        return self.opening is not None and self.opening.applies(plan, req, streamed=streamed)

    def _gates_stream(self, plan: Plan) -> bool:
        check = self.check
        return (
            check is not None
            and check.gates
            and check.settings.gate_streams
            and plan.decision.route is Route.SMALL
        )

    async def _verified(self, plan: Plan, req: RouterRequest, draft: Reply) -> Reply:
        """verify mode: the small draft is returned only when the large model passes it;
        otherwise the large model answers (the draft's tokens are still counted). A draft
        the large model could not score is returned as it is."""
        assert self.check is not None
        d = plan.decision
        checked = await self.check.check(req.messages, draft.text, d.request_id)
        if checked is None:
            return draft
        d.verified = checked.passed
        if checked.passed:
            return draft
        self.aftercare.discarded(Route.SMALL, draft.usage)
        plan.draft_examples = list(d.examples)
        value = "empty" if checked.value is None else f"{checked.value:.2f}"
        why = f"failed verification ({value} < {checked.threshold:.2f})"
        self.generator.switch(plan, req, Route.LARGE, why)
        return await self.generator.complete(plan, req)

    async def stream(self, req: RouterRequest) -> AsyncIterator[Decision | Delta]:
        """Yields the Decision first, then Deltas. Falls over to the other model only
        while nothing has been sent, so the Decision names the model that answers.
        In verify mode with ``gate_streams``, a small answer is generated whole and
        checked before the first byte; then the answer that is returned (the small one,
        or the large one that replaced it) is sent in one piece."""
        with self.in_flight.slot(req.tenant, _concurrent(req)):
            await self._within_limits(req)
            plan = await self.planner.plan(req)
            if plan.exact_answer is not None:
                done = self.aftercare.exact_served(plan, req, plan.exact_answer)
                yield plan.decision
                yield Delta(done.text, "stop", done.usage)
                return
            if self._gates_stream(plan):
                # The small draft if it passed, else the large answer that replaced it.
                answer = await self._verified(plan, req, await self.generator.complete(plan, req))
                yield plan.decision
                yield Delta(answer.text, answer.finish_reason, answer.usage)
                self.aftercare.answered(plan, req, answer.text, answer.usage, answer.finish_reason)
                return
            parts: list[str] = []
            usage = Usage()
            finish: str | None = None
            sent_decision = False
            if self._opens(plan, req, streamed=True):
                assert self.opening is not None
                deltas = self.opening.answer(plan, req)
            else:
                deltas = self.generator.stream(plan, req)
            async for delta in deltas:
                if not sent_decision:
                    sent_decision = True
                    yield plan.decision
                parts.append(delta.text)
                usage = delta.usage or usage
                finish = delta.finish_reason or finish
                yield delta
            text = "".join(parts)
            if not (usage.prompt_tokens or usage.completion_tokens):
                # Some servers (llama.cpp) send no usage when streaming: estimate it, so
                # the token and cost metrics still count streamed requests (and a client
                # that asked for usage gets the estimate).
                usage = estimated_usage(plan, text)
                yield Delta("", None, usage)
            self.aftercare.answered(plan, req, text, usage, finish)

    async def _within_limits(self, req: RouterRequest) -> None:
        await self.admit(req.tenant, req.limits)

    async def admit(self, tenant: str, limits: TenantLimits | None) -> None:
        """Count a request against its tenant's rate (completions, and the embeddings
        beside them); over the rate raises Overloaded."""
        if self.limiter is not None and limits is not None:
            await self.limiter.admit(tenant, limits)

    async def feedback(
        self, request_id: str, score: float, tenant: str | None = None, source: str = "user"
    ) -> DecisionRecord:
        record = await self.feedback_loop.apply(request_id, score, tenant, source)
        if self.check is not None and source == "user":
            self.check.feedback(request_id, score, LOSS_BELOW)
        return record

    @property
    def active(self) -> int:
        """Requests being handled right now."""
        return self.in_flight.active

    def take_peak_load(self) -> float:
        """The highest load since the last call (0..1): requests in hand against the
        router's limit, or the busier model's utilisation."""
        peak = self.in_flight.take_peak() / self.in_flight.limit
        busiest = max(b.load.snapshot().utilisation for b in self.backends.values())
        return min(1.0, max(peak, busiest))

    def load_snapshot(self) -> LoadSnapshot:
        return load_snapshot(self.backends)

    async def drain(self) -> None:
        """Wait for after-response work (admission, statistics) to finish."""
        await self.aftercare.drain()


def estimated_usage(plan: Plan, text: str) -> Usage:
    return Usage(prompt_tokens(plan.messages), estimate_tokens(text) if text else 0)


async def _collected(plan: Plan, deltas: AsyncIterator[Delta]) -> Reply:
    """A streamed answer as one reply (usage estimated when the model sent none)."""
    parts: list[str] = []
    finish: str | None = None
    usage: Usage | None = None
    async for delta in deltas:
        parts.append(delta.text)
        finish = delta.finish_reason or finish
        usage = delta.usage or usage
    text = "".join(parts)
    if usage is None or not (usage.prompt_tokens or usage.completion_tokens):
        usage = estimated_usage(plan, text)
    return Reply(text, finish or "stop", usage)


def _concurrent(req: RouterRequest) -> int | None:
    return req.limits.concurrent_requests if req.limits is not None else None
