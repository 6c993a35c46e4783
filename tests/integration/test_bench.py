"""The benchmark end to end on a few real requests (keeps `iccache bench` working)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iccache_dev.bench.report import rerender
from iccache_dev.bench.run import BenchConfig, run_bench
from iccache_dev.bench.systems import SYSTEMS
from iccache_dev.bench.workloads import NaturalQuestions


def test_natural_questions_load_from_the_pinned_package() -> None:
    nq = NaturalQuestions().load()
    assert (len(nq.history), len(nq.requests)) == (8757, 3610)
    assert all(item.answers for item in nq.requests)
    assert nq.requests[0].question == "who got the first nobel prize in physics"


async def test_a_tiny_benchmark_compares_every_system(tmp_path: Path, embedder: Any) -> None:
    cfg = BenchConfig(
        requests=4,
        rate_requests=3,
        rate=2.0,
        out=tmp_path,
        workdir=tmp_path / "stack",
        command="pytest",
    )
    rows = await run_bench(cfg, embedder)
    by = {(r["mode"], r["system"]): r for r in rows}
    assert set(by) == {(m, s) for m in ("saturation", "rate") for s in SYSTEMS}
    for (mode, system), row in by.items():
        assert row["errors"] == 0, (mode, system)
        assert row["requests"] == (4 if mode == "saturation" else 3)
        assert row["throughput"] > 0
    assert by[("saturation", "large-only")]["offload"] == 0.0
    assert by[("saturation", "small-only")]["offload"] == 1.0
    assert by[("saturation", "large-only")]["agreement"] == 1.0  # its own answers
    assert by[("saturation", "large-only")]["tokens"]["large"] > 0
    assert by[("saturation", "small-only")]["tokens"] == {
        "small": by[("saturation", "small-only")]["tokens"]["small"],
        "large": 0,
    }
    outcomes = [json.loads(line) for line in (tmp_path / "outcomes.jsonl").read_text().splitlines()]
    assert len(outcomes) == len(SYSTEMS) * (4 + 3)
    assert all(o["response"].strip() for o in outcomes)  # no request was cut off
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert (tmp_path / "tradeoff.png").stat().st_size > 1000
    md = (tmp_path / "results.md").read_text()
    assert "| saturation | iccache-bandit |" in md
    assert "Partial" not in md  # written after every system, complete at the end
    # A budgeted or verifying system reports the budget's state and its checks after its
    # run; the others do not.
    for (mode, system), row in by.items():
        budgeted = system.startswith("iccache-budget-")
        verifying = "verif" in system
        assert ("quality" in row) == (budgeted or verifying), (mode, system)
        if budgeted:
            q = row["quality"]
            assert q["max_loss"] == float(system.rsplit("-", 1)[1])
            assert q["small_answers"] + q["large_answers"] == row["requests"]
            assert f"| {mode} | {system} | {100 * q['max_loss']:.1f}% |" in md
        if system == "iccache-verify-all":  # every request drafted small, then checked
            checked = row["quality"]["verified"]
            assert checked["pass"] + checked["fail"] == row["requests"], (mode, checked)
    # Each system against the baselines on the same requests, and a report remade from
    # the run's own files says the same.
    for (mode, _), row in by.items():
        for base, v in row["versus"].items():
            assert v["difference"] == pytest.approx(row["accuracy"] - by[(mode, base)]["accuracy"])
            assert v["ci"][0] <= v["difference"] <= v["ci"][1]
    assert set(by[("rate", "iccache-bandit")]["versus"]) == {
        "large-only",
        "small-only",
        "semantic-cache",
    }
    remade = rerender(tmp_path)
    assert [r["versus"] for r in remade["rows"]] == [r["versus"] for r in rows]
