"""Several router processes in one pod (``server.workers``), for more than one core.

``iccache serve`` with ``workers`` > 1 becomes a supervisor: it starts that many
``iccache serve`` processes with the same settings, which share the HTTP and gRPC ports
(SO_REUSEPORT: the kernel spreads new connections over them) and their learned state
(it lives in Redis, as between replicas). Their Prometheus metrics are written to one
folder and served merged by whichever worker answers ``/metrics``. A worker that dies
is started again; SIGTERM or SIGINT is passed on to every worker, which drains as a
single router would, and the supervisor exits when they have.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from iccache_sidecar.metrics import METRICS_DIR_ENV

log = logging.getLogger(__name__)

WORKER_ENV = "ICCACHE_WORKER"  # set in a worker: its number
RESTART_DELAY_SECONDS = 1.0
EARLY_EXIT_SECONDS = 30.0  # a worker that dies sooner than this after starting ...
EARLY_EXITS = 3  # ... this many times in a row stops the pod's router (crash loop)


def is_worker() -> bool:
    return WORKER_ENV in os.environ


def supervise(argv: Sequence[str], workers: int, stop_seconds: float) -> int:
    """Run ``argv`` (an ``iccache serve`` command) ``workers`` times until SIGTERM or
    SIGINT; ``stop_seconds`` is how long the workers get to stop before SIGKILL."""
    metrics_dir = tempfile.mkdtemp(prefix="iccache-metrics-")
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    procs: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    early = 0  # workers in a row that died soon after starting
    failed = False

    def start(number: int) -> None:
        env = {**os.environ, WORKER_ENV: str(number), METRICS_DIR_ENV: metrics_dir}
        procs[number] = subprocess.Popen(list(argv), env=env)
        started[number] = time.monotonic()
        log.info("worker %d started (pid %d)", number, procs[number].pid)

    try:
        for number in range(workers):
            start(number)
        while not stop.wait(RESTART_DELAY_SECONDS):
            for number, proc in list(procs.items()):
                if proc.poll() is None:
                    continue
                _forget(metrics_dir, proc.pid)
                early = early + 1 if time.monotonic() - started[number] < EARLY_EXIT_SECONDS else 0
                if early >= EARLY_EXITS:
                    log.error(
                        "worker %d exited with %s, the %d. worker in a row to die within %.0f s "
                        "of starting; stopping",
                        number,
                        proc.returncode,
                        early,
                        EARLY_EXIT_SECONDS,
                    )
                    failed = True
                    stop.set()
                    break
                log.error(
                    "worker %d (pid %d) exited with %s; starting it again",
                    number,
                    proc.pid,
                    proc.returncode,
                )
                start(number)
        log.info("stopping %d workers", len(procs))
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [_wait(proc, stop_seconds) for proc in procs.values()]
        return 1 if failed else max(codes, default=0)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> int:
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        log.error("worker pid %d did not stop within %.0f s; killing it", proc.pid, seconds)
        proc.kill()
        return proc.wait()


def _forget(metrics_dir: str, pid: int) -> None:
    """A dead worker's live gauges leave the merged metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]


def worker_argv(config: str, log_level: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "iccache_sidecar",
        "serve",
        "--config",
        config,
        "--log-level",
        log_level,
    ]
