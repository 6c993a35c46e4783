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

import math
from collections import deque
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


class LossWindow:
    """The last ``size`` judged answers: (margin, True for a loss)."""

    def __init__(self, size: int) -> None:
        self._outcomes: deque[tuple[float, bool]] = deque(maxlen=size)
        self.total = 0  # judged answers ever seen

    def add(self, margin: float, lost: bool) -> None:
        self._outcomes.append((margin, lost))
        self.total += 1

    def replace(self, outcomes: list[tuple[float, bool]], total: int) -> None:
        """Take another copy's contents (oldest first): a window shared by routers."""
        self._outcomes.clear()
        self._outcomes.extend(outcomes)
        self.total = max(total, len(self._outcomes))

    def estimate(self, z: float, offset: float = -math.inf) -> LossEstimate:
        """The loss rate among the answers an ``offset`` would still offload."""
        kept = [lost for margin, lost in self._outcomes if margin >= offset]
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
