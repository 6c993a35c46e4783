"""The readiness wait used by every local service fixture."""

from __future__ import annotations

import pytest

from iccache_dev.local.process import ServiceError, wait_until


def test_returns_once_condition_holds() -> None:
    polls: list[int] = []

    def ready() -> bool:
        polls.append(1)
        return len(polls) == 4

    wait_until(ready, timeout=5, interval=0.001)
    assert len(polls) == 4  # stopped polling as soon as it held


def test_times_out_with_a_message_naming_the_service() -> None:
    with pytest.raises(ServiceError, match=r"redis:1: not ready after 0 s"):
        wait_until(lambda: False, timeout=0.05, interval=0.001, what="redis:1")


def test_stops_waiting_when_the_process_died() -> None:
    with pytest.raises(ServiceError, match="exited with code 1"):
        wait_until(lambda: False, timeout=60, alive=lambda: "exited with code 1", what="llm")
