"""The quality budget on ``iccache serve`` (real Redis and embedder; stand-in models, so
that what each model says is known). Every small answer is shadowed. While the small
model says what the large one says, the estimated loss is 0 and the budget holds; when
the small model starts answering something else, the losses show in the estimate (in
``/metrics`` and ``/quality``), the bar's offset rises, and requests go to the large
model. The comparator is agreement in the first test and a real judge model (Qwen2.5
1.5B through llama.cpp, asked in both orders) in the second."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iccache_contract import names
from iccache_contract.quality import QualityReport
from iccache_dev.bench.standin import StandInRouter, standin_router
from iccache_dev.local.llamacpp import LocalLLM
from iccache_dev.local.process import wait_until
from iccache_dev.local.redis import LocalRedis

QUALITY = {
    "max_loss": 0.3,
    "shadow_rate": 1.0,
    "shadow_max_large_load": 1.0,
    "window": 60,
    "min_samples": 10,
    "hold": 5,
    "step": 0.1,
    "unproven_share": 1.0,  # offload from the start (the last test shows the default)
}
# Everything goes to the small model unless the budget raises the bar.
ROUTING = {"quality_target": 0.0, "load_relief": 0.0, "exploration_rate": 0.0, "quality": QUALITY}


@pytest.fixture
def router(redis_server: LocalRedis, tmp_path: Path) -> Iterator[StandInRouter]:
    with standin_router(tmp_path, redis_server.url, prefix="budget", routing=ROUTING) as r:
        yield r


def gauge(router: StandInRouter, name: str) -> float:
    text = httpx.get(router.url + "/metrics", timeout=10).text
    found = re.search(rf'^{name}\{{scope="\*"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else float("nan")


def overall(router: StandInRouter) -> dict[str, object]:
    """The router's own report at /quality, for the "*" scope."""
    report = QualityReport.model_validate(httpx.get(router.url + names.QUALITY_PATH).json())
    (scope,) = [s for s in report.scopes if s.scope == "*"]
    return scope.model_dump()


def ask(router: StandInRouter, n: int, question: str = "what is the capital of {n}?") -> str:
    content = f"Question {n}: {question.format(n=n)}"
    body = {"model": "iccache", "messages": [{"role": "user", "content": content}]}
    done = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=30)
    assert done.status_code == 200, done.text
    return str(done.json()["iccache"]["route"])


def test_losses_raise_the_bar_and_offload_falls(router: StandInRouter) -> None:
    routes = [ask(router, n) for n in range(30)]
    assert routes.count("small") >= 25
    wait_until(lambda: gauge(router, "iccache_quality_samples") >= 25, timeout=60, what="outcomes")
    assert gauge(router, "iccache_quality_loss") == 0.0
    assert gauge(router, "iccache_quality_loss_upper") <= QUALITY["max_loss"]
    calm = gauge(router, "iccache_quality_bar_offset")

    # The small model gets worse: it answers something else than the large one.
    small = router.models["small"]
    small.kill()
    small.answer = "Bananas are blue and the moon is made of cheese."
    small.start()
    later = [ask(router, n) for n in range(100, 160)]
    wait_until(
        lambda: gauge(router, "iccache_quality_bar_offset") > calm,
        timeout=60,
        what="the bar's offset rising",
    )
    assert gauge(router, "iccache_quality_loss") > 0.0
    assert later[-10:] == ["large"] * 10, later
    report = overall(router)
    assert report["losses"] > 0
    assert report["holds"] is False
    assert report["small_answers"] >= 25
    assert report["large_answers"] >= 10


def test_offload_is_earned_once_enough_answers_are_judged(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    # With unproven_share 0.2 the small model gets a fifth of what the policy would give
    # it until 10 judged answers (all agreeing: no loss) are in; then all of it. Only the
    # shadows judge here (no probes; the next test has them alone).
    earned = {**QUALITY, "unproven_share": 0.2, "probe_rate": 0.0}
    routing = {**ROUTING, "quality": earned}
    with standin_router(tmp_path, redis_server.url, prefix="earned", routing=routing) as r:
        first = [ask(r, n) for n in range(20)]
        held = first.count("large")
        assert 8 <= held <= 20, first  # about 16 expected; the small ones are shadowed
        text = httpx.get(r.url + "/metrics", timeout=10).text
        assert f'iccache_quality_unproven_held_total{{scope="*"}} {held}.0' in text
        n = 100
        while overall(r)["samples"] < QUALITY["min_samples"]:
            assert n < 400, overall(r)
            ask(r, n)
            n += 1
        later = [ask(r, m) for m in range(1000, 1020)]
        assert later == ["small"] * 20, later
        assert overall(r)["holds"] is True


def test_probes_earn_offload_when_nothing_goes_small(
    redis_server: LocalRedis, tmp_path: Path
) -> None:
    # No shadows and nothing offloaded before the budget is shown (the large model busy,
    # in effect): every request is held to the large model, and the idle small model
    # answers it too, off the response path; the probes are the budget's evidence.
    probed = {**QUALITY, "shadow_rate": 0.0, "unproven_share": 0.0, "probe_rate": 1.0}
    routing = {**ROUTING, "quality": probed}
    with standin_router(tmp_path, redis_server.url, prefix="probed", routing=routing) as r:
        routes: list[str] = []
        while overall(r)["samples"] < QUALITY["min_samples"]:
            assert len(routes) < 100, overall(r)
            routes.append(ask(r, len(routes)))
        # Each probe lands after its response: the last request may be the first one
        # answered after the budget was shown.
        assert routes[:-1] == ["large"] * (len(routes) - 1), routes
        text = httpx.get(r.url + "/metrics", timeout=10).text
        found = re.search(r'^iccache_quality_probes_total\{result="no_loss"\} (\S+)$', text, re.M)
        assert found, text
        assert float(found.group(1)) >= QUALITY["min_samples"], text
        later = [ask(r, m) for m in range(1000, 1020)]
        assert later == ["small"] * 20, later
        assert overall(r)["holds"] is True
        assert overall(r)["large_answers"] == routes.count("large")


# The judge answers in seconds, not milliseconds: fewer outcomes before it steers.
# (10 judged answers without a loss are the fewest whose bound is within 0.3.)
JUDGED = {**QUALITY, "window": 40, "hold": 3}
CAPITAL = "what is the capital of Australia?"


def test_a_real_judge_sees_worse_answers_and_the_bar_rises(
    redis_server: LocalRedis, qwen_server: LocalLLM, tmp_path: Path
) -> None:
    judge = {"base_url": qwen_server.base_url, "model": qwen_server.alias}
    routing = {**ROUTING, "quality": JUDGED}
    with standin_router(
        tmp_path, redis_server.url, prefix="judged", routing=routing, judge=judge
    ) as router:
        # Both models say "Canberra.": the judge finds the small answer no worse.
        routes = [ask(router, n, CAPITAL) for n in range(12)]
        assert routes == ["small"] * 12
        wait_until(lambda: overall(router)["samples"] >= 10, timeout=240, what="judged answers")
        calm = overall(router)
        assert calm["losses"] == 0, calm
        assert calm["holds"] is True

        small = router.models["small"]
        small.kill()
        small.answer = "Bananas are blue and the moon is made of cheese."
        small.start()
        for n in range(100, 115):
            ask(router, n, CAPITAL)
        wait_until(
            lambda: overall(router)["bar_offset"] > calm["bar_offset"],
            timeout=300,
            what="the judge's losses raising the bar",
        )
        worse = overall(router)
        assert worse["losses"] > 0
        assert worse["holds"] is False
        assert gauge(router, "iccache_quality_loss") > 0.0
        text = httpx.get(router.url + "/metrics", timeout=10).text
        assert re.search(r'^iccache_feedback_total\{source="shadow-judge"\} [1-9]', text, re.M)
