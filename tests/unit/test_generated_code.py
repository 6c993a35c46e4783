"""The committed gRPC code is exactly what the proto generates (CI fails on drift)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "sidecar" / "iccache_sidecar" / "gen"


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.py*")}
    committed = {p.relative_to(COMMITTED): p.read_text() for p in COMMITTED.rglob("*.py*")}
    assert sorted(fresh) == sorted(committed)
    stale = [str(name) for name, text in fresh.items() if committed[name] != text]
    assert not stale, f"run `python scripts/gen_proto.py`; stale: {stale}"
