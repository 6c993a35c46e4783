"""Planning one request: exact hit, embed, retrieve, select, route.

The result is a :class:`Plan`: the decision (returned to the client and kept for
feedback), the messages to send, and what the after-response work needs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field

from iccache_contract.settings import IneligibleSettings, RouterSettings
from iccache_sidecar.core.domain import (
    Candidate,
    ChatMessage,
    Decision,
    LoadSnapshot,
    RequestFeatures,
    Route,
    RouterRequest,
    Vector,
)
from iccache_sidecar.core.errors import DependencyDown
from iccache_sidecar.core.prompting import (
    exact_scope_text,
    example_scope,
    prompt_tokens,
    retrieval_text,
    with_examples,
)
from iccache_sidecar.core.selection import SelectionRules, select_examples
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.degrade import CacheGate, mark_degraded
from iccache_sidecar.requestpath.eligibility import ineligibility
from iccache_sidecar.requestpath.fitting import (
    check_content,
    check_context,
    fit_examples,
    fits,
    refused_content,
)
from iccache_sidecar.requestpath.ports import Backends, Embedder
from iccache_sidecar.requestpath.quality import QualityBudget
from iccache_sidecar.routing.base import RoutingContext, RoutingPolicy

log = logging.getLogger(__name__)

STAGES = ("embed", "retrieve", "select", "route")  # the timed steps of planning

EMBED_TIMEOUT_SECONDS = 5.0
EVERYTHING = IneligibleSettings(exact_hits=True, examples=True, route="policy", store=True)


@dataclass
class Plan:
    decision: Decision
    messages: list[ChatMessage]
    vector: Vector | None
    candidates: list[Candidate]
    selected: list[Candidate] = field(default_factory=list)  # by utility, before routing
    exact_answer: str | None = None
    retrieval_text: str = ""  # what was embedded: also the prompt an admitted example keeps
    scope: str | None = None  # which examples it may use and share (None: tenant-wide)
    began: float = field(default_factory=time.time)  # for forgets that race admission
    exact_text: str = ""  # what names its exact hit
    # A held request's small-model prompt (with its examples), for a probe
    probe: list[ChatMessage] | None = None
    probe_examples: list[Candidate] = field(default_factory=list)
    # verify mode: the examples of a small draft that failed verification
    draft_examples: list[Candidate] = field(default_factory=list)

    @property
    def nearest_similarity(self) -> float | None:
        return self.candidates[0].similarity if self.candidates else None


def selection_rules(settings: RouterSettings) -> SelectionRules:
    r = settings.retrieval
    return SelectionRules(
        max_examples=r.max_examples,
        token_budget=r.token_budget,
        min_similarity=r.min_similarity,
        diversity=r.diversity,
        value_weight=r.value_weight,
        max_value_lift=r.max_value_lift,
    )


def load_snapshot(backends: Backends) -> LoadSnapshot:
    return LoadSnapshot(
        backends[Route.SMALL].load.snapshot(), backends[Route.LARGE].load.snapshot()
    )


class Planner:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        embedder: Embedder | None,
        cache: CacheGate,
        policy: RoutingPolicy,
        backends: Backends,
        metrics: Metrics,
        budget: QualityBudget | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.budget = budget
        self._rng = rng or random.Random()
        self.embedder = embedder
        self.cache = cache
        self.policy = policy
        self.backends = backends
        self.metrics = metrics
        self.rules = selection_rules(settings)

    async def plan(self, req: RouterRequest) -> Plan:
        decision = Decision(
            request_id=uuid.uuid4().hex, tenant=req.tenant, route=Route.LARGE, policy="", reason=""
        )
        plain_tokens = prompt_tokens(req.messages)
        check_context(
            [b.settings for b in self.backends.values()], plain_tokens, req.params.max_tokens
        )
        vector: Vector | None = None
        candidates: list[Candidate] = []
        text = retrieval_text(req.messages, self.settings.retrieval.context_turns)
        allowed = self._eligibility(decision, req)
        user = req.user if self.settings.cache.share == "user" else None
        scope = example_scope(req.messages, user)
        exact_text = exact_scope_text(req.messages, user)

        def planned(
            messages: list[ChatMessage],
            candidates: list[Candidate],
            selected: list[Candidate] | None = None,
            exact_answer: str | None = None,
        ) -> Plan:
            return Plan(
                decision,
                messages,
                vector,
                candidates,
                selected or [],
                exact_answer,
                retrieval_text=text,
                scope=scope,
                exact_text=exact_text,
            )

        # The exact check's round trip to Redis runs while the text is embedded: a miss
        # (the usual case) waits for the embedding only; a hit drops the embedding,
        # which under load is still queued and never runs.
        embedding: asyncio.Task[Vector] | None = None
        if not req.skip_cache and (allowed.examples or allowed.store) and text:
            embedding = asyncio.create_task(self._embedding(text))
        if allowed.exact_hits and self._exact_allowed(req):
            try:
                answer = await self._exact(decision, req, exact_text)
            except BaseException:
                _drop(embedding)
                raise
            if answer is not None:
                _drop(embedding)
                return planned([], [], exact_answer=answer)

        if embedding is not None:
            vector = await self._embedded(decision, embedding)
            if vector is not None:
                candidates = await self._retrieve(decision, vector, scope)
        if allowed.exact_hits and not req.skip_cache and req.force is None and candidates:
            reused = self._reused(decision, candidates[0])
            if reused is not None:
                return planned([], candidates, exact_answer=reused)

        with self._stage("select"):
            usable = candidates if allowed.examples else []
            examples = select_examples(usable, self.rules) if usable else []
        features = RequestFeatures(
            max_similarity=max((c.similarity for c in candidates), default=0.0),
            mean_similarity=_mean([e.similarity for e in examples]),
            mean_value=_mean([e.value for e in examples]),
            n_examples=len(examples),
            max_examples=self.rules.max_examples,
            prompt_tokens=plain_tokens,
        )
        decision.features = features
        with self._stage("route"):
            await self._route(decision, req, features)

        check_content(self.backends[decision.route].settings, req)
        messages = list(req.messages)
        plan = planned(messages, candidates, examples)
        small = self.backends[Route.SMALL].settings
        if decision.route is Route.SMALL:
            decision.examples = fit_examples(examples, req, small)
            plan.messages = with_examples(decision.examples, req.messages)
        elif decision.held and fits(small, req) and not refused_content(small, req):
            plan.probe_examples = fit_examples(examples, req, small)
            plan.probe = with_examples(plan.probe_examples, req.messages)
        decision.backend_model = self.backends[decision.route].model
        self.metrics.examples.observe(len(decision.examples))
        self.metrics.similarity.observe(features.max_similarity)
        return plan

    # -- steps --------------------------------------------------------------------------
    def _eligibility(self, decision: Decision, req: RouterRequest) -> IneligibleSettings:
        """What the cache may do for this request: everything, or for a request it cannot
        serve faithfully, what ``cache.ineligible`` allows."""
        reason = ineligibility(req)
        if reason is None and self.settings.cache.share == "user" and req.user is None:
            reason = "no_user"  # answers are shared per user, and nobody is named
        if reason is None:
            return EVERYTHING
        decision.ineligible = reason
        self.metrics.ineligible.labels(reason).inc()
        allowed = self.settings.cache.ineligible
        if reason in ("prompt_echo", "no_user"):  # never examples, hits or storing
            return IneligibleSettings(route=allowed.route)
        return allowed

    def _exact_allowed(self, req: RouterRequest) -> bool:
        return not req.skip_cache and self.settings.cache.exact_match and req.force is None

    async def _exact(self, decision: Decision, req: RouterRequest, text: str) -> str | None:
        index = self.cache.usable(decision)
        if index is None:
            return None
        try:
            hit = await index.exact(req.tenant, text)
        except DependencyDown as exc:
            self.cache.failed(decision, exc)
            return None
        if hit is None or hit.tenant != req.tenant:
            return None
        decision.exact_hit = True
        decision.policy, decision.reason = "exact-match", f"same prompt as example {hit.id}"
        decision.backend_model = hit.model
        return hit.response

    def _reused(self, decision: Decision, nearest: Candidate) -> str | None:
        """The nearest cached answer, when reuse is on and it is close enough."""
        bar = self.settings.routing.reuse_similarity
        if bar is None or nearest.similarity < bar:
            return None
        decision.exact_hit = True
        decision.policy = "reuse"
        decision.reason = (
            f"nearest cached answer reused: example {nearest.id}, similarity "
            f"{nearest.similarity:.3f} >= {bar:g}"
        )
        decision.backend_model = "cache"
        return nearest.response

    async def _embedding(self, text: str) -> Vector:
        if self.embedder is None:
            raise DependencyDown("no embedder")
        with self._stage("embed"):
            return await asyncio.wait_for(self.embedder.embed(text), EMBED_TIMEOUT_SECONDS)

    async def _embedded(self, decision: Decision, embedding: asyncio.Task[Vector]) -> Vector | None:
        try:
            return await embedding
        except (DependencyDown, TimeoutError) as exc:
            if self.embedder is not None:
                log.warning("embedding failed, routing without examples: %s", exc)
            mark_degraded(decision, self.metrics, "embedder")
            return None

    async def _retrieve(
        self, decision: Decision, vector: Vector, scope: str | None
    ) -> list[Candidate]:
        index = self.cache.usable(decision)
        if index is None:
            return []
        try:
            with self._stage("retrieve"):
                return await index.search(
                    decision.tenant, vector, self.settings.retrieval.candidates, scope
                )
        except DependencyDown as exc:
            self.cache.failed(decision, exc)
            return []

    async def _route(
        self, decision: Decision, req: RouterRequest, features: RequestFeatures
    ) -> None:
        if req.force is not None:
            decision.route, decision.policy, decision.reason = (
                req.force,
                "forced",
                "forced by request",
            )
        elif decision.ineligible is not None and self.settings.cache.ineligible.route == "large":
            decision.route, decision.policy = Route.LARGE, "ineligible"
            decision.reason = f"the cache cannot serve it faithfully ({decision.ineligible})"
        else:
            offset = self.budget.offset(req.tenant) if self.budget is not None else 0.0
            choice = await self.policy.decide(
                RoutingContext(features, load_snapshot(self.backends), offset, req.tenant)
            )
            decision.route, decision.policy, decision.reason = (
                choice.route,
                choice.policy,
                choice.reason,
            )
            decision.predicted_quality = choice.predicted_quality
            decision.margin = choice.margin
            if decision.route is Route.SMALL and self._held(req.tenant):
                decision.route, decision.held = Route.LARGE, True
                decision.reason += (
                    "; held to the large model: the quality budget has too few judged "
                    "answers to be shown yet"
                )
        chosen, other = self.backends[decision.route], self.backends[decision.route.other]
        if not chosen.load.healthy and other.load.healthy and fits(other.settings, req):
            decision.route = decision.route.other
            decision.reason += f"; {chosen.route.value} model marked down"

    def _held(self, tenant: str) -> bool:
        """Whether an answer the policy gave the small model goes to the large one: while
        the budget cannot be shown, only ``unproven_share`` of them stay small."""
        budget = self.budget
        if budget is None or not budget.unproven(tenant):
            return False
        if self._rng.random() < budget.settings.unproven_share:
            return False
        self.metrics.quality_held.labels(budget.scope(tenant)).inc()
        return True

    def _stage(self, name: str) -> _Timer:
        assert name in STAGES, name
        return _Timer(self.metrics, name)


def _drop(task: asyncio.Task[Vector] | None) -> None:
    """Cancel an embedding no longer needed; its outcome is not waited for."""
    if task is not None:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


class _Timer:
    """Observes a stage's duration when the block succeeds."""

    def __init__(self, metrics: Metrics, stage: str) -> None:
        self._metrics, self._stage = metrics, stage
        self._started = 0.0

    def __enter__(self) -> None:
        self._started = time.monotonic()

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            elapsed = time.monotonic() - self._started
            self._metrics.stage_seconds.labels(self._stage).observe(elapsed)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
