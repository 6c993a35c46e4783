"""``iccache fetch-model``: the init container that brings a model file into a pod.

Downloads ``--url`` into ``--dest`` (a cache volume) and checks its sha256. A file that is
already there with the right digest is kept, so a restarted pod does not download again.
The download goes to a temporary name beside the destination and is renamed only once
its digest matched: a half-written or corrupt file is never served. What went wrong is
printed and also written to the termination log, where ``kubectl describe`` shows it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from pathlib import Path

import httpx

CHUNK = 1 << 20
TERMINATION_LOG = Path("/dev/termination-log")


class FetchError(RuntimeError):
    pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str, sha256: str, dest: Path, *, timeout: float = 60.0, progress_every: float = 5.0
) -> bool:
    """Make ``dest`` hold the file at ``url`` with digest ``sha256``. Returns False when a
    matching file was already there, True when it was downloaded."""
    expected = sha256.lower()
    if dest.exists():
        if file_sha256(dest) == expected:
            print(f"fetch-model: {dest} is present and its sha256 matches; not downloading")
            return False
        print(f"fetch-model: {dest} is present but its sha256 differs; downloading again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    digest = hashlib.sha256()
    started = last = time.monotonic()
    done = 0
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise FetchError(f"GET {url} answered HTTP {response.status_code}")
            total = int(response.headers.get("content-length") or 0)
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if now - last >= progress_every:
                        last = now
                        share = f" of {total / 1e6:.0f} MB" if total else ""
                        print(f"fetch-model: {done / 1e6:.0f} MB{share}", flush=True)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise FetchError(f"GET {url} failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    got = digest.hexdigest()
    if got != expected:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{url}: sha256 is {got}, the spec says {expected}; file discarded")
    os.replace(partial, dest)
    took = time.monotonic() - started
    print(f"fetch-model: {dest} ({done / 1e6:.1f} MB) downloaded and checked in {took:.1f} s")
    return True


def run(url: str, sha256: str, dest: Path, termination_log: Path = TERMINATION_LOG) -> int:
    try:
        fetch(url, sha256, dest)
    except (FetchError, OSError) as exc:
        message = f"fetch-model: {exc}"
        print(message, file=sys.stderr)
        if termination_log.parent.exists():
            with contextlib.suppress(OSError):
                termination_log.write_text(message)
        return 1
    return 0
