"""The quality budget counts one verdict per request: a shadow's and a user's on the
same answer, feedback sent twice, or the same request's feedback sent to two routers
add one judged answer, not two; learning still takes every signal."""

from __future__ import annotations

from requestpath_fakes import FakeIndex

from iccache_contract.settings import QualitySettings
from iccache_dataplane.core.domain import Decision, Route
from iccache_dataplane.metrics import Metrics
from iccache_dataplane.requestpath.decisions import DecisionLog
from iccache_dataplane.requestpath.feedback import Feedback
from iccache_dataplane.requestpath.quality import QualityBudget
from iccache_dataplane.routing.fixed import FixedPolicy


def router(index: FakeIndex) -> tuple[Feedback, QualityBudget]:
    metrics = Metrics()
    budget = QualityBudget(QualitySettings(max_loss=0.05), metrics)
    return Feedback(DecisionLog(index), FixedPolicy(Route.SMALL), index, metrics, budget), budget


def small_answer(request_id: str) -> Decision:
    return Decision(request_id, "acme", Route.SMALL, "fixed", "test", margin=0.2)


async def test_a_request_counts_once_in_the_budget_however_often_it_is_judged() -> None:
    index = FakeIndex()
    (first, budget), (second, other_budget) = router(index), router(index)
    decision = small_answer("r1")
    await first.decisions.save(decision)
    first.decisions.remember(decision)
    await first.apply("r1", 0.0, source="shadow")
    await first.apply("r1", 0.0)  # the user's verdict on the same answer
    await first.apply("r1", 0.0)  # and again
    await second.apply("r1", 0.0)  # sent to another router
    await first.probed(small_answer("r1"), [], 0.0)
    assert [s.estimate.samples for s in budget.statuses()] == [1]
    assert [s.estimate.samples for s in other_budget.statuses()] == [0]

    decision = small_answer("r2")
    first.decisions.remember(decision)
    await first.apply("r2", 1.0)
    assert [(s.estimate.samples, s.estimate.losses) for s in budget.statuses()] == [(2, 1)]


async def test_while_redis_is_down_the_routers_memory_decides() -> None:
    index = FakeIndex()
    feedback, budget = router(index)
    feedback.decisions.remember(small_answer("r1"))
    index.down = True
    await feedback.apply("r1", 0.0)
    await feedback.apply("r1", 0.0)
    assert [s.estimate.samples for s in budget.statuses()] == [1]
