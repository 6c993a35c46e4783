"""A child process that is started, waited on until ready, and always stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A local service could not be started or did not become ready."""


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str, verify: ssl.SSLContext | bool = True) -> bool:
    """Whether ``url`` answers 200 now (a readiness probe for local services)."""
    try:
        return httpx.get(url, timeout=2.0, verify=verify).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    alive: Callable[[], str | None] = lambda: None,
    what: str = "condition",
) -> float:
    """Poll ``ready`` until it returns true; return the seconds it took.

    ``alive`` returns an error message when waiting is pointless (the process died);
    then, or when ``timeout`` passes, ServiceError says which of the two happened.
    """
    start = time.monotonic()
    delay = interval
    while True:
        if ready():
            return time.monotonic() - start
        dead = alive()
        if dead is not None:
            raise ServiceError(f"{what}: {dead}")
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise ServiceError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


class ManagedProcess:
    """One child process with its output in a log file.

    Use it as a context manager, or call ``stop()``; stopping sends SIGTERM to the
    process group, then SIGKILL after ``grace`` seconds.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        grace: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.grace = grace
        self.env = {**os.environ, **(env or {})}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = log_path.open("wb")
        self._spawn()

    def _spawn(self) -> None:
        log.info("starting %s: %s", self.name, " ".join(self.argv))
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            self._log_file.close()
            raise ServiceError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc

    def kill(self) -> None:
        """SIGKILL to the process group, as a crash or the OOM killer would end it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def restart(self) -> None:
        """Kill it and start it again with the same command; its log goes on."""
        self.kill()
        self._log_file.close()
        self._log_file = self.log_path.open("ab")
        self._spawn()

    def exit_message(self) -> str | None:
        """None while running; otherwise why it stopped, with the end of its log."""
        code = self.proc.poll()
        if code is None:
            return None
        return f"exited with code {code}; last log lines:\n{self.log_tail()}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> float:
        try:
            took = wait_until(ready, timeout=timeout, alive=self.exit_message, what=self.name)
        except ServiceError:
            self.stop()
            raise
        log.info("%s ready after %.2f s", self.name, took)
        return took

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_file.close()

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
