"""After the response: count it, remember the decision, and off the hot path judge a
sample, update the examples' statistics, save the decision and admit the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from iccache_contract.settings import RouterSettings
from iccache_sidecar.core.domain import (
    Completion,
    Decision,
    Route,
    RouterRequest,
    Usage,
    estimate_tokens,
)
from iccache_sidecar.core.errors import DependencyDown, UnknownRequest
from iccache_sidecar.core.prompting import prompt_tokens
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.admission import Admission, admit, example_text
from iccache_sidecar.requestpath.decisions import DecisionLog
from iccache_sidecar.requestpath.feedback import Feedback
from iccache_sidecar.requestpath.planning import Plan
from iccache_sidecar.requestpath.ports import Backends, ExampleIndex, Judge, Limiter
from iccache_sidecar.requestpath.quality import QualityBudget
from iccache_sidecar.requestpath.shadow import ShadowComparer
from iccache_sidecar.requestpath.verification import DraftCheck

log = logging.getLogger(__name__)

MAX_BACKGROUND_TASKS = 1_000
UNKNOWN_QUALITY = 0.5


def replay_gain(cost: float, large_cost: float, predicted_quality: float | None) -> float:
    """G = normalised cost x (1 - normalised quality), recorded per use (replay ranks by it)."""
    quality = predicted_quality if predicted_quality is not None else UNKNOWN_QUALITY
    return cost / large_cost * (1.0 - quality)


class Aftercare:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        index: ExampleIndex | None,
        backends: Backends,
        metrics: Metrics,
        decisions: DecisionLog,
        feedback: Feedback,
        judge: Judge | None = None,
        limiter: Limiter | None = None,
        shadow: ShadowComparer | None = None,
        budget: QualityBudget | None = None,
        check: DraftCheck | None = None,
    ) -> None:
        self.budget = budget
        self.check = check
        self.limiter = limiter
        self.shadow = shadow
        self.settings = settings
        self.index = index
        self.backends = backends
        self.metrics = metrics
        self.decisions = decisions
        self.feedback = feedback
        self.judge = judge
        self._tasks: set[asyncio.Task[None]] = set()

    def exact_served(self, plan: Plan, req: RouterRequest, answer: str) -> Completion:
        """Count an exact hit (the large call it avoided is saved cost)."""
        self.metrics.count_exact()
        self.metrics.requests.labels("exact", self.metrics.tenant_label(plan.decision.tenant)).inc()
        large = self.backends[Route.LARGE].settings
        # The usage a client sees is the tokens of the prompt and the returned answer
        # (estimated: no model ran); no model cost is counted for them.
        usage = Usage(prompt_tokens(req.messages), estimate_tokens(answer))
        self.metrics.cost_saved.inc(
            (usage.prompt_tokens + usage.completion_tokens) * large.cost_per_token
        )
        self.decisions.remember(plan.decision)
        return Completion(answer, "stop", usage, plan.decision)

    def answered(
        self, plan: Plan, req: RouterRequest, text: str, usage: Usage, finish_reason: str | None
    ) -> None:
        """Count a model's answer and start the work that learns from it (and perhaps
        keeps it: ``finish_reason`` says whether the model ended it itself)."""
        d = plan.decision
        route = d.route.value
        self.metrics.requests.labels(route, self.metrics.tenant_label(d.tenant)).inc()
        self.metrics.count_route(route)
        self.metrics.tokens.labels(route, "prompt").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(route, "completion").inc(usage.completion_tokens)
        spent = (usage.prompt_tokens + usage.completion_tokens) * self._cost(d.route)
        self.metrics.cost.labels(route).inc(spent)
        if d.route is Route.SMALL:
            plain = prompt_tokens(req.messages)
            saved = (plain + usage.completion_tokens) * self._cost(Route.LARGE) - spent
            self.metrics.cost_saved.inc(max(0.0, saved))
        self.decisions.remember(d)
        if self.budget is not None:
            self.budget.answered(d.tenant, small=d.route is Route.SMALL)
        if self.limiter is not None and req.limits and req.limits.tokens_per_minute:
            spent_tokens = usage.prompt_tokens + usage.completion_tokens
            self._spawn(self.limiter.charge(req.tenant, spent_tokens))
        self._spawn(self._learn(plan, req, text, finish_reason))
        check = self.check
        if check is not None and (check.rewards or check.compares):
            if d.verified is not None:  # checked before the response (verify mode)
                self._spawn(check.teach(self.feedback, plan, d.verified))
            elif d.route is Route.SMALL:
                self._spawn(check.check_served(self.feedback, plan, req, text))
        if d.route is Route.SMALL:
            self._compare_sampled(d, req, text)
        elif plan.probe is not None and self.shadow is not None and self.shadow.probe_sampled():
            self._spawn(self._probe(self.shadow, plan, req, text))

    def discarded(self, route: Route, usage: Usage) -> None:
        """Count tokens spent on an answer that was not returned (a small draft that failed
        verification, a large opening the large model was unsure of)."""
        self.metrics.tokens.labels(route.value, "prompt").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(route.value, "completion").inc(usage.completion_tokens)
        spent = (usage.prompt_tokens + usage.completion_tokens) * self._cost(route)
        self.metrics.cost.labels(route.value).inc(spent)

    def _compare_sampled(self, d: Decision, req: RouterRequest, text: str) -> None:
        """Start a comparison of a small answer with the large model's when this answer
        is sampled: the quality budget's shadow comparison (unless the verifier is the
        comparator: it checks every small answer), else the judge's own sample. A task
        of its own, so that a slow large model never delays the decision's save or the
        admission."""
        verifier_compares = self.check is not None and self.check.compares
        if (
            self.shadow is not None
            and self.shadow.settings.shadow_rate > 0
            and not verifier_compares
        ):
            expected = prompt_tokens(req.messages) + estimate_tokens(text)
            if self.shadow.sampled(expected):
                self._spawn(self._shadow(self.shadow, d, req, text))
        elif self.judge is not None and self.judge.sampled():
            self._spawn(self._judge(self.judge, d, req, text))

    async def drain(self) -> None:
        """Wait for after-response work to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- off the hot path ---------------------------------------------------------------
    async def _learn(
        self, plan: Plan, req: RouterRequest, text: str, finish_reason: str | None
    ) -> None:
        d = plan.decision
        if self.index is None:
            return
        try:
            if d.examples:
                await self.index.record_selection(d.example_ids, self._gain(d))
            await self.decisions.save(d)
            await self._admit(plan, req, text, finish_reason)
        except DependencyDown as exc:
            log.warning("after-response work skipped, redis failed: %s", exc)

    async def _judge(self, judge: Judge, d: Decision, req: RouterRequest, text: str) -> None:
        verdict = await judge.judge(req.messages, req.query, text)
        self.metrics.judge_verdicts.labels(verdict.value).inc()
        if verdict.reward is not None:
            await self.feedback.apply(d.request_id, verdict.reward, source="judge")

    async def _shadow(
        self, shadow: ShadowComparer, d: Decision, req: RouterRequest, text: str
    ) -> None:
        """Its outcome teaches the policy and the examples (as feedback would) and counts
        in the quality budget."""
        compared = await shadow.compare(req, text)
        if compared is None:
            self.metrics.shadow.labels("skipped").inc()
            return
        self.metrics.shadow.labels("loss" if compared.lost else "no_loss").inc()
        source = f"shadow-{compared.source}"
        with contextlib.suppress(UnknownRequest):
            await self.feedback.apply(d.request_id, 0.0 if compared.lost else 1.0, source=source)

    async def _probe(
        self, shadow: ShadowComparer, plan: Plan, req: RouterRequest, text: str
    ) -> None:
        """A held request's small answer, judged against the large answer served."""
        assert plan.probe is not None
        compared = await shadow.probe(req, plan.probe, text)
        if compared is None:
            self.metrics.probes.labels("skipped").inc()
            return
        self.metrics.probes.labels("loss" if compared.lost else "no_loss").inc()
        try:
            await self.feedback.small_outcome(
                plan.decision, plan.probe_examples, 0.0 if compared.lost else 1.0
            )
        except DependencyDown as exc:
            log.warning("probe outcome not learned, redis failed: %s", exc)

    async def _admit(
        self, plan: Plan, req: RouterRequest, text: str, finish_reason: str | None
    ) -> None:
        cache = self.settings.cache
        outcome = admit(
            req,
            plan.decision,
            plan.retrieval_text,
            text,
            embedded=plan.vector is not None,
            nearest_similarity=plan.nearest_similarity,
            cache=cache,
            finish_reason=finish_reason,
        )
        override = self.settings.tenancy.overrides.get(req.tenant)
        index = self.index
        if outcome is Admission.STORED and await self._full(req.tenant):
            outcome = Admission.FULL
        if outcome is Admission.STORED and index is not None and plan.vector is not None:
            prompt, answer = example_text(plan.retrieval_text, text, cache)
            example_id = await index.add(
                req.tenant,
                prompt,
                answer,
                plan.vector,
                plan.decision.backend_model,
                exact_text=plan.exact_text,
                request_id=plan.decision.request_id,
                ttl_seconds=override.ttl_seconds if override else None,
                scope=plan.scope,
            )
            d = plan.decision
            if await index.forgotten(req.tenant, d.request_id, plan.began):
                await index.delete(example_id)  # a forget raced this admission
                outcome = Admission.FORGOTTEN
        self.metrics.admissions.labels(outcome.value).inc()

    async def _full(self, tenant: str) -> bool:
        """The cache holds ``cache.capacity`` examples, or the tenant as many as its
        capacity override allows: a flood of new questions stops here, between replay
        runs (which evict down to the capacity by value), instead of filling Redis."""
        if self.index is None:
            return False
        if await self.index.count() >= self.settings.cache.capacity:
            return True
        override = self.settings.tenancy.overrides.get(tenant)
        if override is None or override.capacity is None:
            return False
        return await self.index.count_of(tenant) >= override.capacity

    def _gain(self, d: Decision) -> float:
        return replay_gain(self._cost(d.route), self._cost(Route.LARGE), d.predicted_quality)

    def _cost(self, route: Route) -> float:
        return self.backends[route].settings.cost_per_token

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if len(self._tasks) >= MAX_BACKGROUND_TASKS:
            work.close()
            self.metrics.dropped_tasks.inc()
            return
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("after-response work failed", exc_info=task.exception())
