"""Wrong admin keys lock the caller out for a while (pure throttle, explicit clock)."""

from __future__ import annotations

from iccache_sidecar.core.lockout import FailureThrottle


def test_five_failures_in_a_minute_lock_out_for_five_minutes() -> None:
    t = FailureThrottle()
    for i in range(4):
        t.failed("10.0.0.9", now=float(i))
        assert t.retry_after("10.0.0.9", now=float(i)) is None
    t.failed("10.0.0.9", now=4.0)
    assert t.retry_after("10.0.0.9", now=5.0) == 299.0
    assert t.retry_after("10.0.0.8", now=5.0) is None  # others are not affected
    assert t.retry_after("10.0.0.9", now=304.0) is None  # over


def test_failures_spread_out_or_followed_by_success_do_not_lock() -> None:
    t = FailureThrottle()
    for i in range(10):
        t.failed("a", now=i * 20.0)  # at most 3 within any minute
    assert t.retry_after("a", now=200.0) is None
    for i in range(4):
        t.failed("b", now=float(i))
    t.succeeded("b")
    t.failed("b", now=5.0)
    assert t.retry_after("b", now=5.0) is None


def test_memory_is_bounded() -> None:
    t = FailureThrottle()
    for i in range(20_050):
        t.failed(f"10.{i}", now=0.0)
    assert len(t._failures) <= 10_000
