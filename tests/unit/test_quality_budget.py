"""The quality budget's estimator and controller on simulated streams with a known loss
rate: the bound covers the true rate as often as it says, the controller settles with
the true loss within budget, and it follows a step change both ways."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from iccache_contract.quality import wilson_interval, z_score
from iccache_contract.settings import QualitySettings
from iccache_sidecar.core.quality_budget import LossWindow, Steering, SteeringRules, steer
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.quality import QualityBudget

Z95 = z_score(0.95)


def test_z_score_and_wilson_interval_match_known_values() -> None:
    assert pytest.approx(1.959964, abs=1e-6) == Z95
    low, high = wilson_interval(10, 100, Z95)  # a textbook case
    assert (low, high) == (pytest.approx(0.0552, abs=1e-4), pytest.approx(0.1744, abs=1e-4))
    assert wilson_interval(0, 0, Z95) == (0.0, 1.0)
    assert wilson_interval(0, 200, Z95)[1] == pytest.approx(0.01885, abs=1e-4)


@pytest.mark.parametrize("true_rate", [0.01, 0.02, 0.05])
def test_the_upper_bound_covers_the_true_rate_as_often_as_stated(true_rate: float) -> None:
    rng = random.Random(7)
    trials, covered = 2000, 0
    for _ in range(trials):
        window = LossWindow(400)
        for _ in range(400):
            window.add(0.0, rng.random() < true_rate, "t")
        covered += window.estimate(Z95).upper >= true_rate
    # Two-sided 95%: the upper end alone should hold about 97.5% of the time.
    assert covered / trials >= 0.96


def test_the_window_forgets_old_outcomes_and_counts_only_what_an_offset_offloads() -> None:
    window = LossWindow(10)
    for _ in range(10):
        window.add(0.0, True, "t")
    for margin in range(10):
        window.add(margin / 10, margin < 3, "t")  # the three lowest margins lost
    everything = window.estimate(Z95)
    assert (everything.samples, everything.losses, window.total) == (10, 3, 20)
    raised = window.estimate(Z95, offset=0.3)
    assert (raised.samples, raised.losses) == (7, 0)


@dataclass
class Workload:
    """Requests with a predicted quality q ~ U(0, 1); the small model loses against the
    large one with probability ``scale * (1 - q)``; routed small when q >= bar."""

    scale: float
    base_bar: float = 0.5

    def true_loss(self, offset: float) -> float:
        bar = min(1.0, self.base_bar + offset)
        return self.scale * (1 - (1 + bar) / 2)  # mean of scale * (1 - q) over q >= bar

    def offload(self, offset: float) -> float:
        return max(0.0, 1 - (self.base_bar + offset))


def run(
    workload: Workload,
    rules: SteeringRules,
    requests: int,
    rng: random.Random,
    state: Steering | None = None,
    window: LossWindow | None = None,
) -> tuple[Steering, LossWindow, list[float]]:
    """The controller fed with shadow outcomes of small-routed requests (a tenth of
    them are judged; 5% of requests go small whatever the bar, as the bandit explores);
    returns its state, its window and the offset after each request."""
    state = state or Steering()
    window = window or LossWindow(3000)
    offsets = []
    for _ in range(requests):
        q = rng.random()
        margin = q - workload.base_bar
        offloaded = margin >= state.offset or rng.random() < 0.05
        if offloaded and rng.random() < 0.1:
            window.add(margin, rng.random() < workload.scale * (1 - q), "t")
            state = steer(state, window.estimate(Z95, state.offset), window.total, rules)
        offsets.append(state.offset)
    return state, window, offsets


RULES = SteeringRules(max_loss=0.02, step=0.02, hold=250, min_samples=500)


def test_the_controller_settles_within_budget_without_oscillating() -> None:
    workload = Workload(scale=0.12)  # at offset 0 the true loss is 3%: over budget
    assert workload.true_loss(0.0) > RULES.max_loss
    state, _, offsets = run(workload, RULES, 300_000, random.Random(3))
    settled = offsets[len(offsets) // 2 :]
    assert all(workload.true_loss(o) <= RULES.max_loss for o in settled)
    assert workload.offload(state.offset) > 0.1  # it still offloads
    values = sorted(set(offsets[-len(offsets) // 4 :]))
    assert len(values) <= 2, f"the offset kept moving: {values}"
    if len(values) == 2:
        assert values[1] - values[0] == pytest.approx(RULES.step)


def test_the_controller_follows_a_step_change_both_ways() -> None:
    rng = random.Random(5)
    normal, worse = Workload(scale=0.06), Workload(scale=0.24)
    state, window, _ = run(normal, RULES, 200_000, rng)
    calm = state.offset
    assert normal.true_loss(calm) <= RULES.max_loss

    # The small model gets worse (say its examples stop helping): the bar rises until
    # the true loss is back within budget, and offload falls.
    state, window, _ = run(worse, RULES, 300_000, rng, state, window)
    assert state.offset > calm
    assert worse.true_loss(state.offset) <= RULES.max_loss
    assert worse.offload(state.offset) < normal.offload(calm)

    # It recovers: there is room again, and offload rises again.
    raised = state.offset
    state, _, _ = run(normal, RULES, 300_000, rng, state, window)
    assert state.offset < raised
    assert normal.true_loss(state.offset) <= RULES.max_loss


def _budget() -> QualityBudget:
    settings = QualitySettings(max_loss=0.3, min_samples=10, hold=1000, window=100)
    return QualityBudget(settings, Metrics())


async def test_offload_is_released_only_once_the_budget_is_shown_to_hold() -> None:
    fine = _budget()
    for n in range(10):
        assert fine.unproven("t"), n  # too few judged answers to show anything
        await fine.record("t", margin=0.2, lost=False)
    assert not fine.unproven("t")  # 10 without a loss: the bound is under 0.3

    # Enough samples are not enough: half of them lost, the bound is far above budget.
    poor = _budget()
    for n in range(40):
        await poor.record("t", margin=0.2, lost=n % 2 == 0)
    assert poor.unproven("t")
    assert poor.statuses()[0].holds is False


async def test_under_a_steady_workload_offload_once_released_is_not_held_again() -> None:
    """The whole budget (hold, release and steering) on a simulated stream whose true
    loss at the start is over budget: a tenth of the requests it offloads, and a tenth
    of those it holds (probes), are judged. It is released once, and in the second half
    it is never held again: the bar, not the hold, keeps the budget."""
    rng = random.Random(3)
    workload = Workload(scale=0.12)
    budget = QualityBudget(QualitySettings(max_loss=0.02), Metrics())
    changes, was_unproven, requests = [], True, 300_000
    for i in range(requests):
        q = rng.random()
        margin = q - workload.base_bar
        if margin < budget.offset("t") and rng.random() >= 0.05:
            continue  # the policy sends it to the large model
        unproven = budget.unproven("t")
        if unproven != was_unproven:
            changes.append(i)
            was_unproven = unproven
        if rng.random() < 0.1:  # a shadow (offloaded) or a probe (held)
            await budget.record("t", margin, rng.random() < workload.scale * (1 - q))
    assert changes, "never released"
    assert changes[0] < requests // 2
    assert [i for i in changes if i >= requests // 2] == []
    assert not budget.unproven("t")
    assert workload.true_loss(budget.offset("t")) <= 0.02


def test_one_tenant_makes_at_most_its_share_of_a_pooled_window() -> None:
    """A tenant that reports thousands of "no loss" verdicts (true or not) neither
    pushes another tenant's losses out of the pooled window nor makes more than its
    share of the estimate; alone in the window, a tenant fills all of it."""
    window = LossWindow(3000, share=0.25)
    for n in range(400):
        window.add(0.1, n % 5 == 0, "honest")  # 80 losses in 400: 20%
    for _ in range(5000):
        window.add(0.1, False, "flood")
    pooled = window.estimate(Z95)
    assert (pooled.samples, pooled.losses) == (400 + 750, 80)
    assert pooled.upper > 0.05  # a 5% budget is not shown to hold
    unbounded = LossWindow(3000, share=1.0)
    for n in range(400):
        unbounded.add(0.1, n % 5 == 0, "honest")
    for _ in range(5000):
        unbounded.add(0.1, False, "flood")
    assert unbounded.estimate(Z95).losses == 0  # what one shared list would have said
    alone = LossWindow(3000, share=0.25)
    for _ in range(5000):
        alone.add(0.1, False, "only")
    assert alone.estimate(Z95).samples == 3000


def test_a_pooled_window_takes_the_newest_outcomes_across_tenants() -> None:
    window = LossWindow(4, share=0.5)
    for source, lost in [("a", True), ("b", True), ("a", False), ("b", False), ("a", False)]:
        window.add(0.0, lost, source)
    # Newest four with at most two of each: a's two newest, b's two.
    assert [o[2] for o in window.outcomes()] == [False, False, False, True]
    copy = LossWindow(4, share=0.5)
    copy.replace({"a": [(5, 0.0, False), (3, 0.0, False), (1, 0.0, True)]}, total=5)
    assert (copy.estimate(Z95).samples, copy.total) == (3, 5)
