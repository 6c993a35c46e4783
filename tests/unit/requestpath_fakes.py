"""In-memory stand-ins for the request path's protocols (ports.py), for the unit tier.

They hold no logic of iccache's own: a bag-of-words embedder, a list-backed example
index, and model backends that answer from a script or fail on demand. The same paths
run against real Redis, a real embedder and real llama.cpp servers in the integration
tier.
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from iccache_contract.settings import BackendSettings, RouterSettings
from iccache_sidecar.core.domain import (
    Candidate,
    ChatMessage,
    Delta,
    GenerationParams,
    Reply,
    Route,
    RouterRequest,
    StoredExample,
    Usage,
    Vector,
)
from iccache_sidecar.core.errors import BackendUnavailable, ContextTooLong, DependencyDown
from iccache_sidecar.core.load import LoadTracker
from iccache_sidecar.core.prompting import normalise_prompt
from iccache_sidecar.core.verification import DraftScore, Verified
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.service import RouterService
from iccache_sidecar.requestpath.verification import DraftCheck
from iccache_sidecar.routing.fixed import FixedPolicy

DIMENSIONS = 64


def bag_of_words(text: str) -> Vector:
    """Texts that share words point the same way (enough for similarity in tests)."""
    v = np.zeros(DIMENSIONS, dtype=np.float32)
    for word in normalise_prompt(text).strip("?.!").split():
        v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
    norm = float(np.linalg.norm(v))
    return v / norm if norm else v


class FakeEmbedder:
    def __init__(self) -> None:
        self.fail = False
        self.calls = 0

    async def embed(self, text: str) -> Vector:
        self.calls += 1
        if self.fail:
            raise DependencyDown("embedding failed: stand-in told to fail")
        return bag_of_words(text)


@dataclass
class Row:
    id: str
    tenant: str
    prompt: str
    response: str
    vector: Vector
    model: str
    exact_text: str | None = None  # the conversation it answered, when not just the prompt
    scope: str | None = None  # whom it serves within the tenant (None: anyone)


@dataclass
class FakeIndex:
    rows: list[Row] = field(default_factory=list)
    down: bool = False
    calls: list[str] = field(default_factory=list)  # method names, in order
    selections: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    outcomes: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdicts: set[tuple[str, str]] = field(default_factory=set)
    added: list[dict[str, Any]] = field(default_factory=list)  # add()'s keyword arguments
    forgotten_requests: set[str] = field(default_factory=set)

    def _call(self) -> None:
        self.calls.append(sys._getframe(1).f_code.co_name)
        if self.down:
            raise DependencyDown("redis: stand-in told to fail")

    def put(self, tenant: str, prompt: str, response: str, model: str = "large-m") -> str:
        row = Row(uuid.uuid4().hex, tenant, prompt, response, bag_of_words(prompt), model)
        self.rows.append(row)
        return row.id

    async def exact(self, tenant: str, prompt: str) -> StoredExample | None:
        self._call()
        for r in self.rows:
            key = r.exact_text if r.exact_text is not None else r.prompt
            if r.tenant == tenant and normalise_prompt(key) == normalise_prompt(prompt):
                return StoredExample(r.id, r.tenant, r.prompt, r.response, r.model)
        return None

    async def search(
        self, tenant: str, vector: Vector, k: int, scope: str | None = None
    ) -> list[Candidate]:
        self._call()
        scored = [
            Candidate(r.id, r.prompt, r.response, float(r.vector @ vector), r.vector)
            for r in self.rows
            if r.tenant == tenant and r.scope == scope
        ]
        return sorted(scored, key=lambda c: -c.similarity)[:k]

    async def add(
        self,
        tenant: str,
        prompt: str,
        response: str,
        vector: Vector,
        model: str,
        *,
        exact_text: str | None = None,
        request_id: str | None = None,
        ttl_seconds: int | None = None,
        scope: str | None = None,
    ) -> str:
        self._call()
        self.added.append({"request_id": request_id, "ttl_seconds": ttl_seconds, "scope": scope})
        row = Row(uuid.uuid4().hex, tenant, prompt, response, vector, model, exact_text, scope)
        self.rows.append(row)
        return row.id

    async def forgotten(self, tenant: str, request_id: str | None, began: float) -> bool:
        self._call()
        return request_id is not None and request_id in self.forgotten_requests

    async def delete(self, example_id: str) -> bool:
        self._call()
        before = len(self.rows)
        self.rows = [r for r in self.rows if r.id != example_id]
        return len(self.rows) < before

    async def count(self) -> int:
        self._call()
        return len(self.rows)

    async def count_of(self, tenant: str) -> int:
        self._call()
        return sum(1 for r in self.rows if r.tenant == tenant)

    async def record_selection(self, example_ids: Sequence[str], gain: float) -> None:
        self._call()
        self.selections.append((tuple(example_ids), gain))

    async def record_outcome(self, example_ids: Sequence[str], reward: float) -> None:
        self._call()
        self.outcomes.append((tuple(example_ids), reward))

    async def save_decision(self, request_id: str, payload: dict[str, Any], ttl: int) -> None:
        self._call()
        self.decisions[request_id] = payload

    async def load_decision(self, request_id: str) -> dict[str, Any] | None:
        self._call()
        return self.decisions.get(request_id)

    async def claim_verdict(self, request_id: str, purpose: str, ttl: int) -> bool:
        self._call()
        if (request_id, purpose) in self.verdicts:
            return False
        self.verdicts.add((request_id, purpose))
        return True


class FakeBackend:
    """Answers ``answer`` (streamed word by word); fails as told."""

    def __init__(self, route: Route, settings: BackendSettings, answer: str) -> None:
        self.route = route
        self.settings = settings
        self.load = LoadTracker(settings.max_in_flight)
        self.answer = answer
        self.fail_before = False  # raise before any output
        self.too_long = False  # refuse the prompt as longer than its context (a 400)
        self.fail_after: int | None = None  # streamed: raise after this many deltas
        self.seen: list[list[ChatMessage]] = []
        self.params: list[GenerationParams] = []  # of streamed calls
        self.logprobs: list[float] = []  # per streamed word, when asked for
        self.stopped_at: int | None = None  # words sent before the client closed

    @property
    def model(self) -> str:
        return self.settings.model

    def _refuse(self) -> None:
        if self.too_long:
            raise ContextTooLong(f"the {self.route.value} model rejected the prompt: too long")
        if self.fail_before:
            raise self._down()

    def _down(self) -> BackendUnavailable:
        return BackendUnavailable(f"the {self.route.value} model is unavailable (stand-in)")

    async def complete(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Reply:
        self.seen.append(list(messages))
        self._refuse()
        return Reply(self.answer, "stop", Usage(10, len(self.answer.split())))

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]:
        self.seen.append(list(messages))
        self.params.append(params)
        self._refuse()
        words = self.answer.split()
        sent = 0
        try:
            for i, word in enumerate(words):
                if self.fail_after is not None and i >= self.fail_after:
                    raise self._down()
                last = i == len(words) - 1
                text, finish = word + ("" if last else " "), "stop" if last else None
                sent = i + 1
                yield Delta(text, finish, raw=self._chunk(i, text, finish, params))
        except GeneratorExit:
            self.stopped_at = sent  # the client closed the stream here
            raise

    def _chunk(
        self, i: int, text: str, finish: str | None, params: GenerationParams
    ) -> dict[str, Any] | None:
        """With ``logprobs`` asked for: a chat chunk carrying this word's log-probability
        (``logprobs[i]``, else -0.1) as its own and as the top entry."""
        if not params.passthrough.get("logprobs"):
            return None
        lp = self.logprobs[i] if i < len(self.logprobs) else -0.1
        entry = {"token": text, "logprob": lp, "top_logprobs": [{"token": text, "logprob": lp}]}
        choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
        return {"choices": [{**choice, "logprobs": {"content": [entry]}}]}


class FakeVerifier:
    """Scores a draft from a table (answer -> mean log-probability); unknown answers get
    ``default``; ``down`` makes every check unavailable."""

    def __init__(self, scores: dict[str, float], default: float = -5.0) -> None:
        self.scores = scores
        self.default = default
        self.down = False
        self.protocol = "prompt_logprobs"
        self.seen: list[tuple[list[ChatMessage], str]] = []

    async def verify(self, messages: Sequence[ChatMessage], answer: str) -> Verified | None:
        self.seen.append((list(messages), answer))
        if self.down:
            return None
        value = self.scores.get(answer, self.default)
        return Verified(DraftScore(3, value, value, 1.0), 0.01)


@dataclass
class Stack:
    service: RouterService
    embedder: FakeEmbedder
    index: FakeIndex
    small: FakeBackend
    large: FakeBackend
    metrics: Metrics


def settings(**sections: dict[str, Any]) -> RouterSettings:
    base: dict[str, Any] = {
        # Never contacted: the backends are stand-ins.
        "small": {"base_url": "http://127.0.0.1:9/v1", "model": "small-m", "cost_per_token": 0.2},
        "large": {"base_url": "http://127.0.0.1:9/v1", "model": "large-m"},
        "retrieval": {"min_similarity": 0.3},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return RouterSettings.model_validate(base)


def stack(
    route: Route = Route.SMALL, checker: FakeVerifier | None = None, **sections: dict[str, Any]
) -> Stack:
    s = settings(**sections)
    embedder, index, metrics = FakeEmbedder(), FakeIndex(), Metrics()
    check = DraftCheck(s, checker, metrics) if checker is not None else None
    small = FakeBackend(Route.SMALL, s.small, "small answer")
    large = FakeBackend(Route.LARGE, s.large, "large answer")
    service = RouterService(
        s,
        embedder=embedder,
        store=index,
        policy=FixedPolicy(route),
        backends={Route.SMALL: small, Route.LARGE: large},
        metrics=metrics,
        check=check,
    )
    return Stack(service, embedder, index, small, large, metrics)


def request(text: str, tenant: str = "acme", **options: Any) -> RouterRequest:
    return RouterRequest(
        tenant=tenant,
        messages=(ChatMessage("user", text),),
        params=GenerationParams(max_tokens=16),
        **options,
    )


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0
