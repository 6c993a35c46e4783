"""Verdicts on one request count once: in the quality budget a request is one judged
answer however many verdicts it gets (a shadow's, a user's, feedback sent twice or to
another router), and each source teaches the policy once per request, so repeating
feedback cannot lean on the shared bandit."""

from __future__ import annotations

from dataclasses import dataclass, field

from requestpath_fakes import FakeIndex

from iccache_contract.settings import QualitySettings
from iccache_sidecar.core.domain import Decision, RequestFeatures, Route
from iccache_sidecar.metrics import Metrics
from iccache_sidecar.requestpath.decisions import DecisionLog
from iccache_sidecar.requestpath.feedback import Feedback
from iccache_sidecar.requestpath.quality import QualityBudget
from iccache_sidecar.routing.fixed import FixedPolicy

FEATURES = RequestFeatures(0.9, 0.9, 0.5, 2, 4, 40)


@dataclass
class Learning(FixedPolicy):
    lessons: list[tuple[Route, float]] = field(default_factory=list)

    async def learn(
        self, features: RequestFeatures, route: Route, reward: float, tenant: str = ""
    ) -> None:
        self.lessons.append((route, reward))


@dataclass
class Router:
    feedback: Feedback
    budget: QualityBudget
    policy: Learning
    metrics: Metrics

    def samples(self) -> list[tuple[int, int]]:
        return [(s.estimate.samples, s.estimate.losses) for s in self.budget.statuses()]


def router(index: FakeIndex) -> Router:
    metrics, policy = Metrics(), Learning(Route.SMALL)
    budget = QualityBudget(QualitySettings(max_loss=0.05), metrics)
    return Router(
        Feedback(DecisionLog(index), policy, index, metrics, budget), budget, policy, metrics
    )


def small_answer(request_id: str) -> Decision:
    return Decision(request_id, "acme", Route.SMALL, "fixed", "test", features=FEATURES, margin=0.2)


async def two_routers_after_a_small_answer(request_id: str) -> tuple[Router, Router]:
    """Two routers sharing one store; the first answered ``request_id`` on the small
    model and shared its decision."""
    index = FakeIndex()
    first, second = router(index), router(index)
    decision = small_answer(request_id)
    await first.feedback.decisions.save(decision)
    first.feedback.decisions.remember(decision)
    return first, second


async def test_a_request_counts_once_in_the_budget_however_often_it_is_judged() -> None:
    first, second = await two_routers_after_a_small_answer("r1")
    await first.feedback.apply("r1", 0.0, source="shadow-agreement")
    await first.feedback.apply("r1", 0.0)  # the user's verdict on the same answer
    await first.feedback.apply("r1", 0.0)  # and again
    await second.feedback.apply("r1", 0.0)  # sent to another router
    await first.feedback.small_outcome(small_answer("r1"), [], 0.0)
    assert first.samples() == [(1, 1)]
    assert second.samples() == [(0, 0)]

    first.feedback.decisions.remember(small_answer("r2"))
    await first.feedback.apply("r2", 1.0)
    assert first.samples() == [(2, 1)]


async def test_each_source_teaches_once_per_request() -> None:
    one, other = await two_routers_after_a_small_answer("r1")
    for _ in range(5):
        await one.feedback.apply("r1", 0.0)
        await other.feedback.apply("r1", 0.0)
    await one.feedback.apply("r1", 1.0, source="shadow-agreement")
    assert one.policy.lessons == [(Route.SMALL, 0.0), (Route.SMALL, 1.0)]
    assert other.policy.lessons == []
    repeated = one.metrics.registry.get_sample_value(
        "iccache_feedback_repeated_total", {"source": "user"}
    )
    assert repeated == 4


async def test_while_redis_is_down_the_routers_memory_decides() -> None:
    index = FakeIndex()
    r = router(index)
    r.feedback.decisions.remember(small_answer("r1"))
    index.down = True
    await r.feedback.apply("r1", 0.0)
    await r.feedback.apply("r1", 0.0)
    assert r.samples() == [(1, 1)]
    assert len(r.policy.lessons) == 1
