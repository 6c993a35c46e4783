"""A developer verb killed with SIGTERM (``kill``, a CI timeout) stops every server it
started: here ``iccache bench soak``, which runs Redis, two stand-in models and a router
as processes of their own (each in its own session, so a signal to the verb alone does
not reach them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from iccache_dev.local.process import wait_until


def children_of(parent: int) -> dict[int, str]:
    """pid -> command line of the processes whose parent is ``parent``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (name) state"
            if ppid == parent:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return {pid: cmd.decode(errors="replace") for pid, cmd in found.items()}


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_servers_a_bench_started(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "iccache_sidecar.cli", "bench", "soak"]
    err = (tmp_path / "stderr").open("wb")
    verb = subprocess.Popen(
        [*argv, "--connections", "2", "--minutes", "10", "--embedding", "torch"],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=err,
    )
    children: dict[int, str] = {}
    try:
        # Under load: the progress bar of the soak itself has started.
        wait_until(
            lambda: b"soak, 2 connections" in (tmp_path / "stderr").read_bytes(),
            timeout=180,
            alive=lambda: None if verb.poll() is None else f"exited with {verb.returncode}",
            what="the soak under way",
        )
        children = children_of(verb.pid)
        commands = list(children.values())
        assert sum("bench.responder" in c for c in commands) == 2, commands
        assert sum("iccache_sidecar serve" in c for c in commands) == 1, commands
        assert sum("redis" in c for c in commands) == 1, commands

        verb.send_signal(signal.SIGTERM)
        assert verb.wait(timeout=60) != 0
        wait_until(
            lambda: not any(alive(pid) for pid in children), timeout=30, what="its servers gone"
        )
    finally:
        if verb.poll() is None:
            verb.kill()
        for pid in children:  # leave nothing behind: each leads a process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        err.close()
