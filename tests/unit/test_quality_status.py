"""status.quality: what the operator makes of several routers' quality reports."""

from __future__ import annotations

import pytest

from iccache_contract.quality import QualityReport, ScopeQuality, pooled, wilson_interval, z_score
from iccache_operator.quality import running_addresses
from iccache_operator.status import quality_status


def _scope(
    scope: str,
    samples: int,
    losses: int,
    small: int,
    large: int,
    offset: float = 0.0,
    window: str | None = None,
):
    low, high = wilson_interval(losses, samples, z_score(0.95))
    return ScopeQuality(
        scope=scope,
        max_loss=0.05 if scope == "*" else None,
        samples=samples,
        losses=losses,
        loss=losses / samples if samples else 0.0,
        lower=low,
        upper=high,
        bar_offset=offset,
        holds=None if scope != "*" else high <= 0.05,
        small_answers=small,
        large_answers=large,
        window=window,
    )


def test_routers_are_pooled_by_scope_with_the_interval_computed_anew() -> None:
    a = QualityReport(confidence=0.95, scopes=[_scope("*", 300, 3, 600, 400, 0.04)])
    b = QualityReport(
        confidence=0.95, scopes=[_scope("*", 300, 3, 500, 500), _scope("acme", 10, 5, 10, 0)]
    )
    overall, acme = pooled([a, b])
    assert (overall.scope, overall.samples, overall.losses) == ("*", 600, 6)
    assert overall.upper == pytest.approx(wilson_interval(6, 600, z_score(0.95))[1], abs=1e-6)
    # Each router alone is not within 5% (upper ~2.9%: it is); pooled, the bound is tighter.
    assert overall.upper < a.scopes[0].upper
    assert overall.bar_offset == 0.04  # the most cautious router's
    assert overall.holds is True
    assert acme.holds is None
    assert (overall.small_answers, overall.large_answers) == (1100, 900)


def test_routers_sharing_a_window_count_once() -> None:
    # Three routers of one cache share a window in Redis (one a refresh behind); a fourth,
    # of an older version, keeps its own.
    shared = [
        _scope("*", 400, 4, 900, 100, 0.02, window="demo:quality"),
        _scope("*", 400, 4, 900, 100, 0.02, window="demo:quality"),
        _scope("*", 390, 4, 880, 100, 0.04, window="demo:quality"),
    ]
    own = _scope("*", 100, 1, 50, 50)
    (overall,) = pooled([QualityReport(confidence=0.95, scopes=[s]) for s in [*shared, own]])
    assert (overall.samples, overall.losses) == (500, 5)
    assert (overall.small_answers, overall.large_answers) == (950, 150)
    assert overall.bar_offset == 0.04  # still the most cautious copy's


def test_status_quality_reports_offload_budget_and_missing_routers() -> None:
    report = QualityReport(confidence=0.95, scopes=[_scope("*", 50, 10, 30, 70)])
    status = quality_status(3, [report], "2026-12-02T10:00:00Z")
    assert status["routers"] == 3
    assert status["routersReporting"] == 1
    (overall,) = status["scopes"]
    assert overall["offloadRatio"] == 0.3
    assert overall["maxLoss"] == 0.05
    assert overall["holds"] is False
    assert overall["loss"] == 0.2
    assert overall["upper"] > 0.2


def test_no_reports_gives_an_empty_status_not_a_crash() -> None:
    assert pooled([]) == []
    status = quality_status(2, [], "2026-12-02T10:00:00Z")
    assert status["routersReporting"] == 0
    assert status["scopes"] == []


def test_only_running_router_pods_with_an_address_are_asked() -> None:
    pods = [
        {"status": {"phase": "Running", "podIP": "10.0.0.5"}},
        {"status": {"phase": "Pending"}},
        {
            "status": {"phase": "Running", "podIP": "10.0.0.6"},
            "metadata": {"deletionTimestamp": "x"},
        },
        {"status": {"phase": "Running"}},
    ]
    assert running_addresses(pods) == ["10.0.0.5"]
