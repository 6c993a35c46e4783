"""A tiny run of `iccache bench overhead` keeps the benchmark working (figures not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_overhead_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iccache_sidecar.cli",
            "bench",
            "overhead",
            "--requests",
            "20",
            "--concurrency",
            "1",
            "4",
            "--seed-examples",
            "40",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Router overhead" in done.stdout
    figures = json.loads(out.read_text())
    runs = [(r["embedding"], r["concurrency"]) for r in figures["results"]]
    assert runs == [("onnx", 1), ("onnx", 4), ("torch", 1), ("torch", 4)]
    assert all(r["requests"] == 20 and r["errors"] == 0 for r in figures["results"])
    assert [setup.split(",")[0] for setup in figures["stage_ms"]] == ["onnx", "torch"]
    for stages in figures["stage_ms"].values():
        assert {"embed", "retrieve", "select", "route"} <= set(stages)
