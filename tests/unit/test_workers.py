"""The worker supervisor (``server.workers``) with real child processes: a worker that
keeps dying right after it starts stops the supervisor with an error, instead of being
restarted for ever out of sight."""

from __future__ import annotations

import signal
import sys
import time

from iccache_sidecar import workers


def test_a_crash_looping_worker_stops_the_supervisor() -> None:
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    code = workers.supervise([sys.executable, "-c", "raise SystemExit(3)"], 2, 5)
    assert code == 1
    assert time.monotonic() - started < 30  # gave up after a few restarts
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handlers are back
