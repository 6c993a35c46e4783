"""What the request path needs of the world, as small protocols.

The composition root passes the real adapters (Redis store, batching embedder, HTTP
model clients, the pairwise judge); the unit tier passes in-memory fakes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from iccache_contract.settings import BackendSettings, TenantLimits
from iccache_sidecar.core.domain import (
    Candidate,
    ChatMessage,
    Delta,
    Embeddings,
    GenerationParams,
    Reply,
    Route,
    StoredExample,
    Vector,
    Verdict,
)
from iccache_sidecar.core.load import LoadTracker
from iccache_sidecar.core.quality_budget import Outcome, Steering
from iccache_sidecar.core.verification import Verified


class Embedder(Protocol):
    async def embed(self, text: str) -> Vector: ...


class ExampleIndex(Protocol):
    """The example cache, for one router: reads on the hot path, writes after it."""

    async def exact(self, tenant: str, prompt: str) -> StoredExample | None: ...

    async def search(
        self, tenant: str, vector: Vector, k: int, scope: str | None = None
    ) -> list[Candidate]: ...

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
    ) -> str: ...

    async def forgotten(self, tenant: str, request_id: str | None, began: float) -> bool: ...

    async def delete(self, example_id: str) -> bool: ...

    async def count(self) -> int: ...

    async def count_of(self, tenant: str) -> int: ...

    async def record_selection(self, example_ids: Sequence[str], gain: float) -> None: ...

    async def record_outcome(self, example_ids: Sequence[str], reward: float) -> None: ...

    async def save_decision(self, request_id: str, payload: dict[str, Any], ttl: int) -> None: ...

    async def load_decision(self, request_id: str) -> dict[str, Any] | None: ...

    async def claim_verdict(self, request_id: str, purpose: str, ttl: int) -> bool: ...


class ModelBackend(Protocol):
    """An OpenAI-compatible model server."""

    route: Route
    settings: BackendSettings
    load: LoadTracker

    @property
    def model(self) -> str: ...

    async def complete(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> Reply: ...

    def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[Delta]: ...


class Limiter(Protocol):
    """Per-tenant rates shared by all replicas."""

    async def admit(self, tenant: str, limits: TenantLimits) -> None: ...

    async def charge(self, tenant: str, tokens: int) -> None: ...


class Judge(Protocol):
    """Compares a small-model answer with the large model's, on a sample of requests."""

    def sampled(self) -> bool: ...

    async def judge(
        self, conversation: Sequence[ChatMessage], question: str, small_answer: str
    ) -> Verdict: ...


class Verifier(Protocol):
    """The large model's scoring of a draft (``backends.verifier.LogprobVerifier``)."""

    @property
    def protocol(self) -> str: ...

    async def verify(self, messages: Sequence[ChatMessage], answer: str) -> Verified | None: ...


class OutcomeStore(Protocol):
    """The quality budget's state, shared by every router of one cache: per scope, the
    last judged answers, how many were ever judged, the bar's offset, and the answers
    each model gave."""

    name: str  # names the shared window in reports (routers naming it alike count once)

    async def add(self, scope: str, source: str, margin: float, lost: bool, size: int) -> None:
        """Add an outcome judged on a request of tenant ``source``."""
        ...

    async def window(self, scope: str, size: int) -> tuple[dict[str, list[Outcome]], int]:
        """Each tenant's last ``size`` outcomes, newest first, and how many there ever
        were in the scope."""
        ...

    async def steering(self, scope: str) -> Steering: ...

    async def move(self, scope: str, seen: Steering, new: Steering) -> Steering:
        """Store ``new`` if the stored state is still ``seen``; the stored state after."""
        ...

    async def count_answers(self, scope: str, small: int, large: int) -> tuple[int, int]:
        """Add answers of each model; the totals after."""
        ...


Backends = Mapping[Route, ModelBackend]


class EmbeddingsSource(Protocol):
    """What answers ``POST /v1/embeddings``: the router's own model or a server."""

    @property
    def model(self) -> str: ...

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings: ...

    async def close(self) -> None: ...
