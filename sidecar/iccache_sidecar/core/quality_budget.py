"""The quality budget's arithmetic: an estimate of the loss rate with a confidence bound,
and the controller that moves the routing bar so that the bound stays within budget.

A *loss* is a small-model answer found worse than the large model's would have been (by
a shadow comparison or by feedback). Each judged answer is kept with its *margin*: how
far the request's predicted quality was above the routing bar (without the budget's
offset). A request is offloaded under offset ``o`` exactly when its margin is at least
``o``, so the loss rate *at* an offset is the share of losses among the judged answers
with a margin of at least ``o``: raising the bar leaves out, at once, the answers it
would no longer offload (no lag, no overshoot). The estimate carries a Wilson score
interval; the controller acts on its upper end, so that "within budget" means "within
budget with the stated confidence", not "the point estimate looks fine".

The controller keeps an offset added to the routing policy's quality bar: a positive
offset routes fewer requests to the small model. It moves one ``step`` at a time, only
after ``hold`` new outcomes since its last move, and not at all while the upper bound is
in a dead band just below the budget: under a steady workload it settles.
Everything here is pure.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from iccache_contract.quality import wilson_interval


@dataclass(frozen=True)
class LossEstimate:
    samples: int
    losses: int
    lower: float
    upper: float

    @property
    def rate(self) -> float:
        return self.losses / self.samples if self.samples else 0.0

    def within(self, max_loss: float) -> bool:
        return self.upper <= max_loss


Outcome = tuple[int, float, bool]  # (sequence number, margin, lost), in one source's list

EARLIER = ""  # the source of outcomes kept by an earlier version (no tenant is named so)
MAX_SOURCES = 100  # tenants a window keeps outcomes of (those heard from least lately go)


def pooled(sources: Mapping[str, Sequence[Outcome]], size: int, share: float) -> list[Outcome]:
    """The window made of several tenants' outcomes (each list newest first): the newest
    ``size`` of them all, where no tenant makes more than ``share`` of the window while
    another tenant has outcomes in it. One tenant's judged answers (honest or not) then
    move a pooled estimate by a bounded amount, and a flood of them pushes nobody
    else's out: each tenant has a list of its own. The outcomes of an earlier version
    (source ``EARLIER``, tenants unknown) are not bounded. Newest first."""
    lists = {name: list(itertools.islice(o, size)) for name, o in sources.items() if o}
    if len(lists) > 1:
        cap = max(1, math.ceil(share * size))
        lists = {name: o if name == EARLIER else o[:cap] for name, o in lists.items()}
    merged = heapq.merge(*lists.values(), key=lambda o: o[0], reverse=True)
    return list(itertools.islice(merged, size))


class LossWindow:
    """The last ``size`` judged answers, (margin, True for a loss), each from a source
    (a tenant): one window per budget scope, pooled across its tenants (see
    :func:`pooled`; a scope of one tenant is simply its last ``size`` outcomes)."""

    def __init__(self, size: int, share: float = 1.0) -> None:
        self.size = size
        self.share = share
        self._sources: dict[str, deque[Outcome]] = {}  # newest first
        self._seq = 0
        self._merged: list[Outcome] | None = None
        self.total = 0  # judged answers ever seen

    def add(self, margin: float, lost: bool, source: str) -> None:
        self._seq += 1
        outcomes = self._sources.pop(source, None) or deque(maxlen=self.size)
        outcomes.appendleft((self._seq, margin, lost))
        self._sources[source] = outcomes  # the most recently heard from last
        while len(self._sources) > MAX_SOURCES:
            del self._sources[next(iter(self._sources))]
        self._merged = None
        self.total += 1

    def replace(self, sources: Mapping[str, Sequence[Outcome]], total: int) -> None:
        """Take another copy's contents: a window shared by routers."""
        ordered = sorted(sources.items(), key=lambda item: item[1][0][0] if item[1] else 0)
        self._sources = {
            source: deque(itertools.islice(outcomes, self.size), maxlen=self.size)
            for source, outcomes in ordered[-MAX_SOURCES:]
        }
        self._seq = max((o[0][0] for o in self._sources.values() if o), default=0)
        self._merged = None
        self.total = max(total, len(self.outcomes()))

    def outcomes(self) -> list[Outcome]:
        """The outcomes the estimate counts, newest first."""
        if self._merged is None:
            self._merged = pooled(self._sources, self.size, self.share)
        return self._merged

    def estimate(self, z: float, offset: float = -math.inf) -> LossEstimate:
        """The loss rate among the answers an ``offset`` would still offload."""
        kept = [lost for _, margin, lost in self.outcomes() if margin >= offset]
        losses = sum(kept)
        lower, upper = wilson_interval(losses, len(kept), z)
        return LossEstimate(len(kept), losses, lower, upper)


@dataclass(frozen=True)
class SteeringRules:
    max_loss: float  # the budget: the largest loss rate allowed
    step: float = 0.02  # how far the bar moves at once
    hold: int = 250  # new outcomes between moves
    min_samples: int = 500  # outcomes at the current offset before it acts at all
    dead_band: float = 0.5  # stay put while upper >= max_loss * (1 - dead_band)
    max_offset: float = 0.5  # the bar never rises more than this
    min_offset: float = -0.2  # ... nor falls more than this


@dataclass(frozen=True)
class Steering:
    offset: float = 0.0  # added to the routing bar
    moved_at: int = 0  # the window's total when it last moved


def steer(state: Steering, estimate: LossEstimate, total: int, rules: SteeringRules) -> Steering:
    """The next offset, given the estimate at the current offset and how many outcomes
    were ever seen."""
    if estimate.samples < rules.min_samples or total - state.moved_at < rules.hold:
        return state
    if estimate.upper > rules.max_loss:
        offset = state.offset + rules.step
    elif estimate.upper < rules.max_loss * (1 - rules.dead_band):
        offset = state.offset - rules.step
    else:
        return state
    offset = min(rules.max_offset, max(rules.min_offset, offset))
    if offset == state.offset:
        return state
    return Steering(round(offset, 6), total)
