"""``iccache fetch-model`` (a model pod's init container) against a real HTTP server on
loopback: it downloads and checks, keeps a good file on restart, and never leaves a bad
or partial one behind."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iccache_dev.local.fileserver import FileServer
from iccache_sidecar.fetch import FetchError, fetch


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FileServer]:
    root = tmp_path / "served"
    root.mkdir()
    with FileServer(root) as served:
        yield served


def model_file(server: FileServer, size: int = 3 << 20) -> tuple[str, str]:
    data = os.urandom(size)
    (server.folder / "m.gguf").write_bytes(data)
    return f"{server.url}/m.gguf", hashlib.sha256(data).hexdigest()


def test_downloads_checks_and_keeps_a_good_file_on_restart(
    server: FileServer, tmp_path: Path
) -> None:
    url, sha = model_file(server)
    dest = tmp_path / "cache" / "m.gguf"
    assert fetch(url, sha, dest) is True
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    requests = len(server.requests)
    assert fetch(url, sha, dest) is False  # a restarted pod: no second download
    assert len(server.requests) == requests
    assert [p.name for p in dest.parent.iterdir()] == ["m.gguf"]


def test_a_changed_file_on_disk_is_downloaded_again(server: FileServer, tmp_path: Path) -> None:
    url, sha = model_file(server)
    dest = tmp_path / "m.gguf"
    dest.write_bytes(b"truncated")
    assert fetch(url, sha, dest) is True
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha


def test_a_wrong_digest_leaves_nothing_to_serve(server: FileServer, tmp_path: Path) -> None:
    url, _ = model_file(server)
    dest = tmp_path / "cache" / "m.gguf"
    with pytest.raises(FetchError, match=r"sha256 is .* the spec says"):
        fetch(url, "0" * 64, dest)
    assert list(dest.parent.iterdir()) == []  # neither the file nor its partial download


def test_command_reports_http_errors_in_the_termination_log(
    server: FileServer, tmp_path: Path
) -> None:
    log = tmp_path / "termination-log"
    script = (
        "import sys; from pathlib import Path; from iccache_sidecar.fetch import run;"
        " sys.exit(run(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])))"
    )
    args = [f"{server.url}/missing.gguf", "0" * 64, str(tmp_path / "m.gguf"), str(log)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "answered HTTP 404" in done.stderr
    assert "answered HTTP 404" in log.read_text()
    assert not (tmp_path / "m.gguf").exists()


def test_cli_verb_fetches(server: FileServer, tmp_path: Path) -> None:
    url, sha = model_file(server, size=1024)
    dest = tmp_path / "m.gguf"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iccache_sidecar",
            "fetch-model",
            "--url",
            url,
            "--sha256",
            sha,
            "--dest",
            str(dest),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "downloaded and checked" in done.stdout
    assert dest.read_bytes() == (server.folder / "m.gguf").read_bytes()
