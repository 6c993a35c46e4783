"""The replay job's decisions, as pure functions (no I/O): what to evict, whether to
distil or expand an example, which answer to keep, how to read paraphrases."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from iccache_sidecar.core.prompting import normalise_prompt


@dataclass(frozen=True)
class ExampleMeta:
    """What eviction needs to know of one stored example."""

    id: str
    tenant: str
    created_at: float
    last_used: float  # when the router last selected it (created_at if never)
    uses: int
    rated: float
    helped: float

    @property
    def value(self) -> float:
        """Posterior mean of how much it helps (the same Beta(1, 1) prior as retrieval)."""
        return (self.helped + 1.0) / (self.rated + 2.0)


def retention(meta: ExampleMeta, now: float, idle_tau: float) -> float:
    """How much keeping an example is worth: its learned value, more for examples used
    often, less the longer nobody used them."""
    idle = max(0.0, now - meta.last_used)
    return meta.value * (1.0 + math.log1p(meta.uses)) * math.exp(-idle / idle_tau)


def eviction_victims(
    metas: Sequence[ExampleMeta], capacity: int, ttl_seconds: int, now: float, idle_tau: float
) -> list[ExampleMeta]:
    """Examples past the TTL, then the lowest-retention ones until ``capacity`` is met.
    Ties go against the older example."""
    expired = [m for m in metas if ttl_seconds and now - m.created_at > ttl_seconds]
    gone = {m.id for m in expired}
    alive = [m for m in metas if m.id not in gone]
    excess = len(alive) - capacity
    if excess <= 0:
        return expired
    alive.sort(key=lambda m: (retention(m, now, idle_tau), m.created_at))
    return expired + alive[:excess]


def victims_with_overrides(
    metas: Sequence[ExampleMeta],
    capacity: int,
    ttl_seconds: int,
    overrides: Mapping[str, tuple[int | None, int | None]],
    now: float,
    idle_tau: float,
) -> list[ExampleMeta]:
    """Eviction with per-tenant overrides, ``{tenant: (capacity, ttl_seconds)}`` (None:
    the cache's): each such tenant is first held to its own capacity and TTL; then the
    cache's TTL applies to the other tenants and its ``capacity`` to everyone left."""
    victims: list[ExampleMeta] = []
    for tenant, (own_capacity, own_ttl) in overrides.items():
        own = [m for m in metas if m.tenant == tenant]
        limit = len(own) if own_capacity is None else own_capacity
        ttl = ttl_seconds if own_ttl is None else own_ttl
        victims += eviction_victims(own, limit, ttl, now, idle_tau)
    gone = {m.id for m in victims}
    expired = [
        m
        for m in metas
        if m.tenant not in overrides and ttl_seconds and now - m.created_at > ttl_seconds
    ]
    gone |= {m.id for m in expired}
    alive = [m for m in metas if m.id not in gone]
    return victims + expired + eviction_victims(alive, capacity, 0, now, idle_tau)


class Action(Enum):
    DISTIL = "distil"
    EXPAND = "expand"


def choose_action(neighbour_similarity: float | None, isolation_similarity: float) -> Action:
    """An example far from every other one widens coverage best by companions; one in a
    crowded region gains most from a better answer."""
    if neighbour_similarity is None or neighbour_similarity < isolation_similarity:
        return Action.EXPAND
    return Action.DISTIL


def agreement_scores(vectors: npt.NDArray[np.float32]) -> list[float]:
    """For unit vectors, each one's mean cosine similarity to all the others."""
    n = len(vectors)
    if n < 2:
        return [1.0] * n
    sims = vectors @ vectors.T
    return [float((sims[i].sum() - sims[i, i]) / (n - 1)) for i in range(n)]


def keep_or_replace(scores: Sequence[float], margin: float) -> int:
    """Index of the answer to keep; index 0 is the one stored now and wins unless another
    scores at least ``margin`` higher (so a rerun on the same answers changes nothing)."""
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return best if best != 0 and scores[best] >= scores[0] + margin else 0


_LEADER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|[A-Za-z][.)]|Q\d*:|Question\s*\d*:)\s*")
_QUOTES = "\"'\u201c\u201d`"


def parse_paraphrases(text: str, original: str, limit: int) -> list[str]:
    """Lines of a model's reply that read as distinct rewordings of ``original``."""
    seen = {normalise_prompt(original)}
    out: list[str] = []
    for line in text.splitlines():
        candidate = _LEADER.sub("", line).strip().strip(_QUOTES).strip()
        key = normalise_prompt(candidate)
        if not 8 <= len(candidate) <= 400 or key in seen or candidate.endswith(":"):
            continue
        seen.add(key)
        out.append(candidate)
        if len(out) == limit:
            break
    return out


def decayed_gain(events: Iterable[tuple[float, float]], tau: float) -> float:
    """The gain the store keeps: a time-decayed average of (time, gain) events, in time
    order (a reference for the store's atomic script)."""
    s = n = 0.0
    last: float | None = None
    for at, gain in events:
        decay = 1.0 if last is None else math.exp(-max(0.0, at - last) / tau)
        s, n, last = s * decay + gain, n * decay + 1.0, at
    return s / n if n else 0.0
