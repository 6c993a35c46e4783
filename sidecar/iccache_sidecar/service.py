"""The request path: exact hit, embed, retrieve, select, route, generate, learn.

Protocol-neutral: the HTTP and gRPC layers translate to and from these calls. Every step
degrades instead of failing: without Redis or the embedder a request goes straight to a
model; when the chosen model fails, the other one answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from iccache_sidecar.backends import Backend, Delta
from iccache_sidecar.domain import (
    Candidate,
    ChatMessage,
    Completion,
    Decision,
    LoadSnapshot,
    RequestFeatures,
    Route,
    RouterRequest,
    Usage,
    Vector,
    estimate_tokens,
)
from iccache_sidecar.embedding import BatchingEmbedder
from iccache_sidecar.errors import (
    BackendTimeout,
    BackendUnavailable,
    ContextTooLong,
    DependencyDown,
    Overloaded,
    UnknownRequest,
)
from iccache_sidecar.judge import PairwiseJudge
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.pii import redact
from iccache_sidecar.prompting import prompt_tokens, with_examples
from iccache_sidecar.routing.base import RoutingContext, RoutingPolicy
from iccache_sidecar.selection import SelectionRules, select_examples
from iccache_sidecar.settings import RouterSettings
from iccache_sidecar.store import ExampleStore

log = logging.getLogger(__name__)

DECISION_TTL_SECONDS = 86_400
MAX_BACKGROUND_TASKS = 1_000
LOCAL_DECISIONS = 10_000


@dataclass(frozen=True)
class DecisionRecord:
    """What feedback needs of a past decision; kept locally and in Redis."""

    tenant: str
    route: Route
    example_ids: tuple[str, ...]
    features: RequestFeatures | None

    @classmethod
    def of(cls, d: Decision) -> DecisionRecord:
        return cls(d.tenant, d.route, tuple(d.example_ids), d.features)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "route": self.route.value,
            "examples": list(self.example_ids),
            "features": None if self.features is None else asdict(self.features),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecisionRecord:
        f = data.get("features")
        return cls(
            tenant=str(data["tenant"]),
            route=Route(data["route"]),
            example_ids=tuple(data.get("examples", ())),
            features=RequestFeatures(**f) if f else None,
        )


@dataclass
class Plan:
    decision: Decision
    messages: list[ChatMessage]
    vector: Vector | None
    candidates: list[Candidate]
    selected: list[Candidate] = field(default_factory=list)  # by utility, before routing
    exact_answer: str | None = None


class RouterService:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        embedder: BatchingEmbedder | None,
        store: ExampleStore | None,
        policy: RoutingPolicy,
        backends: dict[Route, Backend],
        metrics: Metrics,
        judge: PairwiseJudge | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.policy = policy
        self.backends = backends
        self.metrics = metrics
        self.judge = judge
        self._active = 0
        self._peak_active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._decisions: OrderedDict[str, DecisionRecord] = OrderedDict()
        self._redis_down_until = 0.0
        r = settings.retrieval
        self._rules = SelectionRules(
            max_examples=r.max_examples,
            token_budget=r.token_budget,
            min_similarity=r.min_similarity,
            diversity=r.diversity,
            value_weight=r.value_weight,
        )

    # -- public API ---------------------------------------------------------------------
    async def complete(self, req: RouterRequest) -> Completion:
        with self._slot():
            plan = await self._plan(req)
            if plan.exact_answer is not None:
                return self._exact_completion(plan, req, plan.exact_answer)
            text, finish, usage = await self._generate(plan, req)
            self._after(plan, req, text, usage)
            return Completion(text, finish, usage, plan.decision)

    async def stream(self, req: RouterRequest) -> AsyncIterator[Decision | Delta]:
        """Yields the Decision first, then Deltas. Falls over to the other backend only
        while nothing has been sent."""
        with self._slot():
            plan = await self._plan(req)
            if plan.exact_answer is not None:
                done = self._exact_completion(plan, req, plan.exact_answer)
                yield plan.decision
                yield Delta(done.text, "stop", done.usage)
                return
            parts: list[str] = []
            usage = Usage()
            for attempt in (0, 1):
                backend = self.backends[plan.decision.route]
                sent_decision = False
                try:
                    started = time.monotonic()
                    async for delta in backend.stream(plan.messages, req.params):
                        if not sent_decision:
                            sent_decision = True
                            yield plan.decision
                        parts.append(delta.text)
                        usage = delta.usage or usage
                        yield delta
                    self.metrics.backend_seconds.labels(backend.route.value).observe(
                        time.monotonic() - started
                    )
                    break
                except (BackendUnavailable, BackendTimeout):
                    if sent_decision or attempt == 1 or not self._fall_over(plan, req):
                        raise
            text = "".join(parts)
            if not (usage.prompt_tokens or usage.completion_tokens):
                # Some servers (llama.cpp) send no usage when streaming: estimate it, so
                # the token and cost metrics still count streamed requests.
                usage = Usage(prompt_tokens(plan.messages), estimate_tokens(text) if text else 0)
            self._after(plan, req, text, usage)

    async def feedback(
        self, request_id: str, score: float, tenant: str | None = None, source: str = "user"
    ) -> DecisionRecord:
        """Apply a quality signal in [0, 1] to the routing decision and examples of a
        request. ``tenant``, when given, must match the request's."""
        record = self._decisions.get(request_id)
        if record is None and self.store is not None:
            with contextlib.suppress(DependencyDown):
                payload = await self.store.load_decision(request_id)
                record = DecisionRecord.from_json(payload) if payload else None
        if record is None or (tenant is not None and tenant != record.tenant):
            raise UnknownRequest(f"no decision is known for request id {request_id!r}")
        self.metrics.feedback.labels(source).inc()
        if record.features is not None:
            await self.policy.learn(record.features, record.route, score)
        if record.route is Route.SMALL and record.example_ids and self.store is not None:
            with contextlib.suppress(DependencyDown):
                await self.store.record_outcome(record.example_ids, score)
        return record

    @property
    def active(self) -> int:
        """Requests being handled right now."""
        return self._active

    def take_peak_load(self) -> float:
        """The highest load since the last call (0..1): requests in hand against the
        router's limit, or the busier backend's utilisation."""
        peak, self._peak_active = self._peak_active, self._active
        backends = max(b.load.snapshot().utilisation for b in self.backends.values())
        return min(1.0, max(peak / self.settings.server.max_concurrency, backends))

    def load_snapshot(self) -> LoadSnapshot:
        return LoadSnapshot(
            self.backends[Route.SMALL].load.snapshot(), self.backends[Route.LARGE].load.snapshot()
        )

    async def drain(self) -> None:
        """Wait for after-response work (admission, statistics) to finish."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- planning -----------------------------------------------------------------------
    async def _plan(self, req: RouterRequest) -> Plan:
        decision = Decision(
            request_id=uuid.uuid4().hex, tenant=req.tenant, route=Route.LARGE, policy="", reason=""
        )
        plain_tokens = prompt_tokens(req.messages)
        self._check_context(plain_tokens, req.params.max_tokens)
        use_cache = not req.skip_cache
        vector: Vector | None = None
        candidates: list[Candidate] = []

        if (
            use_cache
            and self.settings.cache.exact_match
            and req.force is None
            and _single_turn(req)
        ):
            answer = await self._exact(decision, req)
            if answer is not None:
                return Plan(decision, [], None, [], exact_answer=answer)

        if use_cache:
            vector = await self._embed(decision, req.query)
            if vector is not None:
                candidates = await self._retrieve(decision, vector)

        started = time.monotonic()
        examples = select_examples(candidates, self._rules) if candidates else []
        self.metrics.stage_seconds.labels("select").observe(time.monotonic() - started)
        features = RequestFeatures(
            max_similarity=max((c.similarity for c in candidates), default=0.0),
            mean_similarity=_mean([e.similarity for e in examples]),
            mean_value=_mean([e.value for e in examples]),
            n_examples=len(examples),
            max_examples=self._rules.max_examples,
            prompt_tokens=plain_tokens,
        )
        decision.features = features

        started = time.monotonic()
        if req.force is not None:
            decision.route, decision.policy, decision.reason = (
                req.force,
                "forced",
                "forced by request",
            )
        else:
            choice = await self.policy.decide(RoutingContext(features, self.load_snapshot()))
            decision.route, decision.policy, decision.reason = (
                choice.route,
                choice.policy,
                choice.reason,
            )
            decision.predicted_quality = choice.predicted_quality
        self._avoid_unhealthy(decision, req)
        self.metrics.stage_seconds.labels("route").observe(time.monotonic() - started)

        messages = list(req.messages)
        if decision.route is Route.SMALL:
            decision.examples = self._fit(examples, req)
            messages = with_examples(decision.examples, req.messages)
        decision.backend_model = self.backends[decision.route].model
        self.metrics.examples.observe(len(decision.examples))
        self.metrics.similarity.observe(features.max_similarity)
        return Plan(decision, messages, vector, candidates, selected=examples)

    def _check_context(self, tokens: int, max_tokens: int) -> None:
        limit = max(b.settings.max_context_tokens for b in self.backends.values())
        if tokens + max_tokens > limit:
            raise ContextTooLong(
                f"the prompt (about {tokens} tokens) plus max_tokens ({max_tokens}) exceeds "
                f"the largest model context ({limit} tokens)",
                param="messages",
            )

    def _fit(self, examples: list[Candidate], req: RouterRequest) -> list[Candidate]:
        """Drop the weakest examples until the small model's context holds the prompt."""
        limit = self.backends[Route.SMALL].settings.max_context_tokens - req.params.max_tokens
        kept = list(examples)
        while kept and prompt_tokens(with_examples(kept, req.messages)) > limit:
            kept.pop()
        return kept

    def _avoid_unhealthy(self, decision: Decision, req: RouterRequest) -> None:
        chosen = self.backends[decision.route]
        other = self.backends[decision.route.other]
        if not chosen.load.healthy and other.load.healthy and self._fits(decision.route.other, req):
            decision.route = decision.route.other
            decision.reason += f"; {chosen.route.value} model marked down"

    def _fits(self, route: Route, req: RouterRequest) -> bool:
        limit = self.backends[route].settings.max_context_tokens
        return prompt_tokens(req.messages) + req.params.max_tokens <= limit

    async def _exact(self, decision: Decision, req: RouterRequest) -> str | None:
        if not self._redis_usable(decision):
            return None
        assert self.store is not None
        try:
            hit = await self.store.exact(req.tenant, req.query)
        except DependencyDown as exc:
            self._redis_failed(decision, exc)
            return None
        if hit is None or hit.tenant != req.tenant:
            return None
        decision.exact_hit = True
        decision.policy, decision.reason = "exact-match", f"same prompt as example {hit.id}"
        decision.backend_model = hit.model
        return hit.response

    async def _embed(self, decision: Decision, text: str) -> Vector | None:
        if self.embedder is None:
            decision.degraded.append("embedder")
            self.metrics.degraded.labels("embedder").inc()
            return None
        started = time.monotonic()
        try:
            vector = await asyncio.wait_for(self.embedder.embed(text), timeout=5.0)
        except (DependencyDown, TimeoutError) as exc:
            log.warning("embedding failed, routing without examples: %s", exc)
            decision.degraded.append("embedder")
            self.metrics.degraded.labels("embedder").inc()
            return None
        self.metrics.stage_seconds.labels("embed").observe(time.monotonic() - started)
        return vector

    async def _retrieve(self, decision: Decision, vector: Vector) -> list[Candidate]:
        if not self._redis_usable(decision):
            return []
        assert self.store is not None
        started = time.monotonic()
        try:
            found = await self.store.search(
                decision.tenant, vector, self.settings.retrieval.candidates
            )
        except DependencyDown as exc:
            self._redis_failed(decision, exc)
            return []
        self.metrics.stage_seconds.labels("retrieve").observe(time.monotonic() - started)
        return found

    def _redis_usable(self, decision: Decision) -> bool:
        if self.store is not None and time.monotonic() >= self._redis_down_until:
            return True
        if "redis" not in decision.degraded:
            decision.degraded.append("redis")
            self.metrics.degraded.labels("redis").inc()
        return False

    def _redis_failed(self, decision: Decision, exc: Exception) -> None:
        log.warning("redis failed, serving without the cache: %s", exc)
        self._redis_down_until = time.monotonic() + self.settings.redis.retry_after_seconds
        if "redis" not in decision.degraded:
            decision.degraded.append("redis")
            self.metrics.degraded.labels("redis").inc()

    # -- generation ---------------------------------------------------------------------
    async def _generate(self, plan: Plan, req: RouterRequest) -> tuple[str, str, Usage]:
        for attempt in (0, 1):
            backend = self.backends[plan.decision.route]
            started = time.monotonic()
            try:
                result = await backend.complete(plan.messages, req.params)
            except (BackendUnavailable, BackendTimeout):
                if attempt == 1 or not self._fall_over(plan, req):
                    raise
                continue
            self.metrics.backend_seconds.labels(backend.route.value).observe(
                time.monotonic() - started
            )
            return result
        raise BackendUnavailable("no model could answer")  # unreachable: loop returns or raises

    def _fall_over(self, plan: Plan, req: RouterRequest) -> bool:
        """Switch the plan to the other backend; False when that cannot serve it."""
        failed = plan.decision.route
        target = failed.other
        if not self._fits(target, req):
            return False
        self.metrics.fallbacks.labels(failed.value).inc()
        log.warning("%s model failed; falling over to the %s model", failed.value, target.value)
        plan.decision.route = target
        plan.decision.fell_back = True
        plan.decision.reason += f"; fell over from the {failed.value} model"
        plan.decision.backend_model = self.backends[target].model
        if target is Route.LARGE:
            plan.decision.examples = []
            plan.messages = list(req.messages)
        else:
            plan.decision.examples = self._fit(plan.selected, req)
            plan.messages = with_examples(plan.decision.examples, req.messages)
        return True

    def _exact_completion(self, plan: Plan, req: RouterRequest, answer: str) -> Completion:
        self.metrics.count_exact()
        self.metrics.requests.labels("exact", plan.decision.tenant).inc()
        large = self.backends[Route.LARGE].settings
        avoided = prompt_tokens(req.messages) + estimate_tokens(answer)  # the large call skipped
        self.metrics.cost_saved.inc(avoided * large.cost_per_token)
        self._remember(plan.decision)
        return Completion(answer, "stop", Usage(0, 0), plan.decision)

    # -- after the response -------------------------------------------------------------
    def _after(self, plan: Plan, req: RouterRequest, text: str, usage: Usage) -> None:
        d = plan.decision
        route = d.route.value
        self.metrics.requests.labels(route, d.tenant).inc()
        self.metrics.count_route(route)
        self.metrics.tokens.labels(route, "prompt").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(route, "completion").inc(usage.completion_tokens)
        spent = (usage.prompt_tokens + usage.completion_tokens) * self.backends[
            d.route
        ].settings.cost_per_token
        self.metrics.cost.labels(route).inc(spent)
        if d.route is Route.SMALL:
            large = self.backends[Route.LARGE].settings.cost_per_token
            plain = prompt_tokens(req.messages)
            self.metrics.cost_saved.inc(max(0.0, (plain + usage.completion_tokens) * large - spent))
        self._remember(d)
        self._spawn(self._learn_after(plan, req, text))

    async def _learn_after(self, plan: Plan, req: RouterRequest, text: str) -> None:
        d = plan.decision
        if self.judge is not None and d.route is Route.SMALL and self.judge.sampled():
            verdict = await self.judge.judge(req.messages, req.query, text)
            self.metrics.judge_verdicts.labels(verdict.value).inc()
            if verdict.reward is not None:
                await self.feedback(d.request_id, verdict.reward, source="judge")
        if self.store is None:
            return
        try:
            if d.examples:
                await self.store.record_selection(d.example_ids, self._gain(d))
            await self.store.save_decision(
                d.request_id, DecisionRecord.of(d).to_json(), DECISION_TTL_SECONDS
            )
            await self._admit(plan, req, text)
        except DependencyDown as exc:
            log.warning("after-response work skipped, redis failed: %s", exc)

    def _gain(self, d: Decision) -> float:
        """G = normalised cost x (1 - normalised quality), recorded per use (replay ranks by it)."""
        large = self.backends[Route.LARGE].settings.cost_per_token
        cost = self.backends[d.route].settings.cost_per_token / large
        quality = d.predicted_quality if d.predicted_quality is not None else 0.5
        return cost * (1.0 - quality)

    async def _admit(self, plan: Plan, req: RouterRequest, text: str) -> None:
        d, cache = plan.decision, self.settings.cache
        if req.no_store or req.skip_cache or plan.vector is None or not text.strip():
            self.metrics.admissions.labels("skipped").inc()
            return
        allowed = cache.store_large if d.route is Route.LARGE else cache.store_small
        if not allowed or (d.fell_back and d.route is Route.SMALL):
            self.metrics.admissions.labels("skipped").inc()
            return
        if prompt_tokens([ChatMessage("user", req.query), ChatMessage("assistant", text)]) > (
            cache.max_example_tokens
        ):
            self.metrics.admissions.labels("too_long").inc()
            return
        if plan.candidates and plan.candidates[0].similarity >= cache.dedupe_similarity:
            self.metrics.admissions.labels("duplicate").inc()
            return
        prompt, answer = req.query, text
        if cache.redact_pii:
            prompt, answer = redact(prompt), redact(answer)
        assert self.store is not None
        await self.store.add(req.tenant, prompt, answer, plan.vector, d.backend_model)
        self.metrics.admissions.labels("stored").inc()

    def _remember(self, decision: Decision) -> None:
        self._decisions[decision.request_id] = DecisionRecord.of(decision)
        while len(self._decisions) > LOCAL_DECISIONS:
            self._decisions.popitem(last=False)

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

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        if self._active >= self.settings.server.max_concurrency:
            self.metrics.rejected.inc()
            raise Overloaded(
                f"the router is handling {self._active} requests, its limit; retry shortly"
            )
        self._active += 1
        self._peak_active = max(self._peak_active, self._active)
        try:
            yield
        finally:
            self._active -= 1


def _single_turn(req: RouterRequest) -> bool:
    return sum(1 for m in req.messages if m.role != "system") == 1


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
