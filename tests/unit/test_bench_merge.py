"""Merging runs of the same requests: ``iccache bench report DIR --add OTHER`` gives the
same paired comparisons as one run that measured every system, names the merged run,
and refuses runs of other requests or a system measured twice. Uses the recorded
long-answer run in docs/bench/long, split in two."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iccache_dev.bench.report import rerender

RUN = Path(__file__).resolve().parents[2] / "docs" / "bench" / "long"
BASELINES = {"large-only", "small-only", "semantic-cache"}


def split(tmp: Path) -> tuple[Path, Path]:
    results = json.loads((RUN / "results.json").read_text())
    records = [json.loads(line) for line in (RUN / "outcomes.jsonl").open()]
    parts = []
    for name, keep in (("baselines", True), ("iccache", False)):
        out = tmp / name
        out.mkdir()
        meta = {**results["meta"], "command": f"iccache bench ... --out {name}"}
        rows = [r for r in results["rows"] if (r["system"] in BASELINES) == keep]
        (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}))
        mine = [r for r in records if (r["system"] in BASELINES) == keep]
        (out / "outcomes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mine))
        parts.append(out)
    return parts[0], parts[1]


def test_merged_runs_compare_as_one_run_did(tmp_path: Path) -> None:
    whole = {r["system"]: r for r in json.loads((RUN / "results.json").read_text())["rows"]}
    baselines, iccache = split(tmp_path)
    merged = rerender(baselines, [iccache])
    rows = {r["system"]: r for r in merged["rows"]}
    assert set(rows) == set(whole)
    for system, row in rows.items():
        assert row["versus"] == whole[system]["versus"], system
    header = (baselines / "results.md").read_text().splitlines()[0]
    assert "Merged with `iccache bench ... --out iccache`" in header
    assert "Partial" not in header
    assert len((baselines / "outcomes.jsonl").read_text().splitlines()) == 200 * len(whole)
    assert rerender(baselines)["rows"] == merged["rows"]  # what it wrote stands alone


def test_runs_that_cannot_be_merged_are_refused(tmp_path: Path) -> None:
    baselines, iccache = split(tmp_path)
    with pytest.raises(ValueError, match="both runs measured large-only"):
        rerender(baselines, [baselines])
    results = json.loads((iccache / "results.json").read_text())
    results["meta"]["requests"] = 100
    (iccache / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match="its requests is 100, not 200"):
        rerender(baselines, [iccache])


def test_a_merged_run_that_was_cut_short_leaves_the_report_partial(tmp_path: Path) -> None:
    baselines, iccache = split(tmp_path)
    results = json.loads((iccache / "results.json").read_text())
    results["meta"]["planned_runs"] = len(results["rows"]) + 1
    (iccache / "results.json").write_text(json.dumps(results))
    merged = rerender(baselines, [iccache])
    header = (baselines / "results.md").read_text().splitlines()[0]
    assert f"**Partial**: {len(merged['rows'])} of {len(merged['rows']) + 1} runs" in header
