"""What feedback needs of past decisions: kept in memory and, for other replicas and
restarts, in Redis."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from iccache_sidecar.core.domain import Decision, RequestFeatures, Route
from iccache_sidecar.core.errors import DependencyDown
from iccache_sidecar.requestpath.ports import ExampleIndex

DECISION_TTL_SECONDS = 86_400
LOCAL_DECISIONS = 10_000


@dataclass(frozen=True)
class DecisionRecord:
    tenant: str
    route: Route
    example_ids: tuple[str, ...]
    features: RequestFeatures | None
    margin: float | None = None  # predicted quality over the routing bar (quality budget)

    @classmethod
    def of(cls, d: Decision) -> DecisionRecord:
        return cls(d.tenant, d.route, tuple(d.example_ids), d.features, d.margin)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "route": self.route.value,
            "examples": list(self.example_ids),
            "features": None if self.features is None else asdict(self.features),
            "margin": self.margin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecisionRecord:
        f = data.get("features")
        return cls(
            tenant=str(data["tenant"]),
            route=Route(data["route"]),
            example_ids=tuple(data.get("examples", ())),
            features=RequestFeatures(**f) if f else None,
            margin=data.get("margin"),
        )


class DecisionLog:
    def __init__(self, index: ExampleIndex | None, capacity: int = LOCAL_DECISIONS) -> None:
        self._index = index
        self._capacity = capacity
        self._local: OrderedDict[str, DecisionRecord] = OrderedDict()
        self._claimed: OrderedDict[tuple[str, str], None] = OrderedDict()

    def remember(self, decision: Decision) -> None:
        """Keep a decision locally (at once: feedback may arrive before it is saved)."""
        self._local[decision.request_id] = DecisionRecord.of(decision)
        while len(self._local) > self._capacity:
            self._local.popitem(last=False)

    async def save(self, decision: Decision) -> None:
        """Share a decision with other replicas (raises DependencyDown)."""
        if self._index is not None:
            payload = DecisionRecord.of(decision).to_json()
            await self._index.save_decision(decision.request_id, payload, DECISION_TTL_SECONDS)

    async def find(self, request_id: str) -> DecisionRecord | None:
        record = self._local.get(request_id)
        if record is None and self._index is not None:
            with contextlib.suppress(DependencyDown):
                payload = await self._index.load_decision(request_id)
                record = DecisionRecord.from_json(payload) if payload else None
        return record

    async def claim_verdict(self, request_id: str, purpose: str) -> bool:
        """True for the first verdict on a request for ``purpose``, False for every later
        one (from this router or, through Redis, any other). The quality budget counts
        one verdict per request (purpose ``budget``) and each source teaches once per
        request (``learn-<source>``), so a shadow and a user's feedback do not count the
        same answer twice, and feedback sent again does not teach again. While Redis is
        down, this router's memory decides."""
        claim = (request_id, purpose)
        if claim in self._claimed:
            return False
        self._claimed[claim] = None
        while len(self._claimed) > self._capacity:
            self._claimed.popitem(last=False)
        if self._index is not None:
            with contextlib.suppress(DependencyDown):
                return await self._index.claim_verdict(request_id, purpose, DECISION_TTL_SECONDS)
        return True
