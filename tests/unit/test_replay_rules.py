"""The replay job's pure decisions: eviction, distil-or-expand, answer choice, budgets."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from iccache_sidecar.backends.judge import PROMPT
from iccache_sidecar.core.domain import ChatMessage, Usage
from iccache_sidecar.replay.budget import Budget, BudgetExhausted, prompt_token_bound
from iccache_sidecar.replay.pickers import JudgePicker
from iccache_sidecar.replay.rules import (
    Action,
    ExampleMeta,
    agreement_scores,
    choose_action,
    decayed_gain,
    eviction_victims,
    keep_or_replace,
    parse_paraphrases,
    retention,
    victims_with_overrides,
)
from iccache_sidecar.replay.summary import ReplaySummary
from iccache_sidecar.storage.loadboard import fresh_peak

NOW = 1_000_000.0
DAY = 86_400.0


def meta(
    i: str,
    *,
    age: float = DAY,
    idle: float = 0.0,
    uses: int = 0,
    rated: float = 0,
    helped: float = 0,
) -> ExampleMeta:
    return ExampleMeta(i, "t", NOW - age, NOW - idle, uses, rated, helped)


def test_eviction_drops_expired_then_lowest_retention_down_to_capacity() -> None:
    metas = [
        meta("expired", age=10 * DAY, uses=50, rated=10, helped=10),  # useful but past TTL
        meta("hurts", uses=20, rated=10, helped=0),  # learned to hurt
        meta("idle", idle=30 * DAY, uses=3),  # nobody used it for a month
        meta("fresh-unused"),
        meta("popular", uses=40, rated=5, helped=5),
        meta("helps", uses=5, rated=4, helped=4),
    ]
    victims = eviction_victims(metas, capacity=3, ttl_seconds=7 * 86_400, now=NOW, idle_tau=7 * DAY)
    assert [v.id for v in victims] == ["expired", "idle", "hurts"]
    assert eviction_victims(metas, capacity=10, ttl_seconds=0, now=NOW, idle_tau=DAY) == []


def test_eviction_holds_each_tenant_to_its_own_capacity_and_ttl() -> None:
    def of(tenant: str, i: str, age: float = DAY, uses: int = 0) -> ExampleMeta:
        return ExampleMeta(i, tenant, NOW - age, NOW, uses, 0, 0)

    metas = [
        of("small", "s-old", age=3 * DAY),  # past its tenant's 2-day TTL
        of("small", "s-used", uses=9),
        of("small", "s-idle"),  # over its tenant's capacity of 1
        of("big", "b-old", age=3 * DAY),  # the cache's TTL (7 days) keeps it
        of("big", "b-1", uses=5),
        of("big", "b-2", uses=5),
    ]
    overrides = {"small": (1, 2 * int(DAY))}
    victims = victims_with_overrides(metas, 10, 7 * int(DAY), overrides, NOW, DAY)
    assert sorted(v.id for v in victims) == ["s-idle", "s-old"]
    # The cache's capacity then applies to what is left, every tenant together.
    victims = victims_with_overrides(metas, 3, 7 * int(DAY), overrides, NOW, DAY)
    assert sorted(v.id for v in victims) == ["b-old", "s-idle", "s-old"]


def test_retention_orders_by_value_use_and_idleness() -> None:
    good = meta("a", uses=5, rated=5, helped=5)
    assert retention(good, NOW, DAY) > retention(meta("b", uses=5, rated=5, helped=0), NOW, DAY)
    assert retention(good, NOW, DAY) > retention(meta("c", uses=0, rated=5, helped=5), NOW, DAY)
    stale = meta("d", uses=5, rated=5, helped=5, idle=3 * DAY)
    assert retention(good, NOW, DAY) > retention(stale, NOW, DAY)


def test_isolated_examples_are_expanded_crowded_ones_distilled() -> None:
    assert choose_action(None, 0.8) is Action.EXPAND
    assert choose_action(0.5, 0.8) is Action.EXPAND
    assert choose_action(0.9, 0.8) is Action.DISTIL


def test_agreement_keeps_the_stored_answer_unless_clearly_beaten() -> None:
    rng = np.random.default_rng(1)
    centre = rng.normal(size=16)
    near = [centre + rng.normal(scale=0.1, size=16) for _ in range(3)]
    far = rng.normal(size=16)
    unit = lambda v: (v / np.linalg.norm(v)).astype(np.float32)  # noqa: E731
    # Stored answer is the outlier: a sample replaces it.
    scores = agreement_scores(np.stack([unit(far), *map(unit, near)]))
    assert keep_or_replace(scores, margin=0.02) != 0
    # Stored answer agrees with the samples: it stays (reruns change nothing).
    scores = agreement_scores(np.stack([unit(near[0]), unit(near[1]), unit(near[2])]))
    assert keep_or_replace([scores[0], scores[0] + 0.01, scores[2]], margin=0.02) == 0


def test_paraphrases_are_read_from_numbered_or_bulleted_lines() -> None:
    reply = (
        "Here are some rewordings:\n1. Who created the Mona Lisa?\n- Who painted the famous "
        '"Mona Lisa"?\n\n* Who painted the Mona Lisa?\n2) Which artist painted the Mona Lisa?'
    )
    got = parse_paraphrases(reply, "Who painted the Mona Lisa?", limit=3)
    assert got == [
        "Who created the Mona Lisa?",
        'Who painted the famous "Mona Lisa"?',
        "Which artist painted the Mona Lisa?",
    ]
    assert parse_paraphrases(reply, "x", limit=1) == ["Who created the Mona Lisa?"]


def test_decayed_gain_weights_recent_selections_more() -> None:
    tau = 100.0
    assert decayed_gain([(0, 1.0)], tau) == 1.0
    old_high = decayed_gain([(0, 1.0), (1000, 0.0)], tau)
    old_low = decayed_gain([(0, 0.0), (1000, 1.0)], tau)
    assert old_high < 0.01 < 0.99 < old_low
    assert decayed_gain([(0, 1.0), (0, 0.0)], tau) == pytest.approx(0.5)


def test_budget_never_lets_a_call_exceed_what_is_left() -> None:
    rng = random.Random(7)
    for _ in range(200):
        budget = Budget(requests=rng.randint(0, 6), tokens=rng.randint(0, 3000))
        calls = 0
        while True:
            messages = [ChatMessage("user", "x" * rng.randint(1, 400))]
            try:
                allowed = budget.reserve(messages, max_tokens=rng.randint(1, 512))
            except BudgetExhausted:
                break
            calls += 1
            # The worst a server can report: the whole bound of the prompt, every token.
            worst = Usage(prompt_token_bound(messages), allowed)
            budget.charge(worst, messages, allowed)
        assert calls <= budget.requests
        assert budget.used_tokens <= budget.tokens


def test_load_board_reads_the_highest_fresh_report() -> None:
    entries = {"a": f"0.20 {NOW - 1}", "b": f"0.90 {NOW - 60}", "c": f"0.50 {NOW}", "d": "junk"}
    assert fresh_peak(entries, NOW) == 0.5
    assert fresh_peak({}, NOW) == 0.0


async def test_judge_picker_follows_a_fair_rule_regardless_of_position() -> None:
    """A rule judge that prefers the answer naming Paris (position-blind): the picker must
    keep that answer whichever seat it is shown in."""

    async def rule_judge(messages: list[ChatMessage], max_tokens: int) -> str:
        text = messages[0].content
        a = text.split("Answer A: ")[1].split("\n\nAnswer B: ")[0]
        b = text.split("Answer B: ")[1].split("\n\nBetter answer")[0]
        assert text.startswith(PROMPT.split("{question}")[0])
        return "A" if "Paris" in a and "Paris" not in b else ("B" if "Paris" in b else "T")

    answers = ["I am not sure.", "Lyon, I think.", "The capital of France is Paris.", "Nice."]
    for seed in range(20):
        pick = await JudgePicker(random.Random(seed)).pick("capital?", answers, rule_judge)
        assert pick.index == 2
        assert pick.quality == 1.0
    kept = await JudgePicker(random.Random(0)).pick("capital?", ["Paris.", "Nice."], rule_judge)
    assert kept.index == 0


def test_summary_fits_a_termination_message() -> None:
    summary = ReplaySummary(started_at=NOW)
    for i in range(300):
        summary.tenant(f"tenant-{i:03d}").replayed = i
    text = summary.compact()
    assert len(text.encode()) <= 4000
    data = json.loads(text)
    assert data["totals"]["replayed"] == sum(range(300))
    assert data["line"].startswith("completed: replayed 44850")
