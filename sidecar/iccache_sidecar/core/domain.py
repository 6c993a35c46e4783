"""Plain data passed between the router's parts (no I/O here)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt

from iccache_contract.settings import TenantLimits

Vector = npt.NDArray[np.float32]


class Route(Enum):
    SMALL = "small"
    LARGE = "large"

    @property
    def other(self) -> Route:
        return Route.LARGE if self is Route.SMALL else Route.SMALL


@dataclass(frozen=True)
class ChatMessage:
    """One turn. ``content`` is its text (what is embedded, counted and cached); ``raw``,
    when the turn came from a client, is the message as sent (tool calls, content parts
    of any type), which is what the model receives."""

    role: str
    content: str
    raw: Mapping[str, Any] | None = field(default=None, compare=False)

    def wire(self) -> Mapping[str, Any]:
        return self.raw if self.raw is not None else {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    passthrough: Mapping[str, Any] = field(default_factory=dict)
    """Request fields iccache does not interpret, sent to the model unchanged."""
    stream_usage: bool = False
    """The client asked for a usage chunk at the end of a stream."""


@dataclass(frozen=True)
class RouterRequest:
    """One request, whatever the protocol it came in by."""

    tenant: str
    messages: tuple[ChatMessage, ...]
    params: GenerationParams
    skip_cache: bool = False
    no_store: bool = False
    force: Route | None = None
    limits: TenantLimits | None = None  # the caller's rates (None: unlimited)
    user: str | None = None  # the end user, when the credentials name one

    @property
    def query(self) -> str:
        """The last user turn."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return self.messages[-1].content


@dataclass(frozen=True)
class Candidate:
    """A cached example retrieved for a request, with what the router learned of it."""

    id: str
    prompt: str
    response: str
    similarity: float
    vector: Vector
    rated: float = 0.0  # total weight of outcomes observed while it was used
    helped: float = 0.0  # sum of rewards of those outcomes
    tokens: int = 0

    @property
    def value(self) -> float:
        """Posterior mean of how much it helps (Beta(1, 1) prior: 0.5 when unknown)."""
        return (self.helped + 1.0) / (self.rated + 2.0)


@dataclass(frozen=True)
class BackendLoad:
    in_flight: int
    capacity: int
    latency_ewma: float
    healthy: bool

    @property
    def utilisation(self) -> float:
        return self.in_flight / self.capacity if self.capacity else 1.0


@dataclass(frozen=True)
class LoadSnapshot:
    small: BackendLoad
    large: BackendLoad

    def of(self, route: Route) -> BackendLoad:
        return self.small if route is Route.SMALL else self.large


@dataclass(frozen=True)
class RequestFeatures:
    """What a routing policy knows about a request and the examples chosen for it."""

    max_similarity: float  # best candidate, chosen or not
    mean_similarity: float  # of the chosen examples (0 when none)
    mean_value: float  # learned value of the chosen examples (0 when none)
    n_examples: int
    max_examples: int
    prompt_tokens: int

    def vector(self) -> tuple[float, ...]:
        """The context vector of the contextual bandit (fixed order, bias first)."""
        return (
            1.0,
            self.mean_similarity,
            self.mean_value if self.n_examples else 0.0,
            self.n_examples / self.max_examples if self.max_examples else 0.0,
            min(math.log1p(self.prompt_tokens) / math.log1p(4096), 1.0),
        )


FEATURE_NAMES = ("bias", "mean_similarity", "mean_value", "example_share", "prompt_length")


@dataclass(frozen=True)
class RouteChoice:
    route: Route
    policy: str
    reason: str
    explored: bool = False
    predicted_quality: float | None = None
    margin: float | None = None  # predicted quality over the bar, before the budget's offset


@dataclass
class Decision:
    """What was done for one request; returned to the client and kept for feedback."""

    request_id: str
    tenant: str
    route: Route
    policy: str
    reason: str
    backend_model: str = ""
    examples: list[Candidate] = field(default_factory=list)
    features: RequestFeatures | None = None
    exact_hit: bool = False
    degraded: list[str] = field(default_factory=list)  # what was down
    fell_back: bool = False
    predicted_quality: float | None = None
    margin: float | None = None  # see RouteChoice.margin
    ineligible: str | None = None  # why the cache could not serve this request faithfully
    held: bool = False  # the policy chose the small model; the unproven budget held it
    verified: bool | None = None  # the small draft passed (True) or failed the verifier
    opening: float | None = None  # the large answer's opening: least top-token logprob

    @property
    def max_similarity(self) -> float:
        return self.features.max_similarity if self.features else 0.0

    @property
    def example_ids(self) -> list[str]:
        return [e.id for e in self.examples]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer; the last one carries the finish reason. ``raw`` is
    the model's chunk as it sent it (tool calls, logprobs), passed on to the client."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    raw: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Reply:
    """A model's whole answer; ``raw`` is its response body as it sent it."""

    text: str
    finish_reason: str
    usage: Usage
    raw: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StoredExample:
    """A cached example as an exact-match hit returns it."""

    id: str
    tenant: str
    prompt: str
    response: str
    model: str


class Verdict(Enum):
    """A pairwise judge's reading of a small answer against the large model's."""

    SMALL_BETTER = "small_better"
    TIE = "tie"
    LARGE_BETTER = "large_better"
    UNPARSED = "unparsed"

    @property
    def reward(self) -> float | None:
        return {Verdict.SMALL_BETTER: 1.0, Verdict.TIE: 1.0, Verdict.LARGE_BETTER: 0.0}.get(self)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    usage: Usage
    decision: Decision
    raw: Mapping[str, Any] | None = field(default=None, compare=False)


def estimate_tokens(text: str) -> int:
    """Rough token count: about 4 characters a token for ASCII text, and more for other
    scripts, weighted by what an English-centric vocabulary makes of them (SmolLM2's:
    about 0.75 a token per Cyrillic or accented letter, 1.5-2 per CJK character, 3 per
    emoji). Counting bytes, as before, made three or four CJK characters one token and
    passed prompts a small model's context cannot hold; larger vocabularies (Qwen's)
    take fewer, so this errs on the high side for them."""
    weight = 0.0
    for c in text:
        point = ord(c)
        weight += (
            0.25 if point < 0x80 else 0.75 if point < 0x800 else 1.5 if point < 0x10000 else 3.0
        )
    return max(1, math.ceil(weight))


@dataclass(frozen=True)
class Embeddings:
    """Vectors for ``POST /v1/embeddings``, one per input text, and the tokens read."""

    vectors: list[list[float]]
    prompt_tokens: int
