"""``iccache bench calibrate``: how well "the small answer's embedding agrees with the
large answer's" stands in for "the small answer is no worse", on an earlier run.

Without a judge, the quality budget's shadow comparison counts a small answer as a loss
when its cosine with the large model's answer to the same request is below
``routing.quality.agreement_threshold``. This reads a bench run's ``outcomes.jsonl``,
pairs every small-model answer (any system, same mode) with large-only's answer to the
same request, and, for a range of thresholds, compares the comparator's verdicts with the
reference answers' (a *true loss*: large-only is right and the small answer is not).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95


@dataclass(frozen=True)
class Pair:
    cosine: float
    lost: bool  # large-only right, the small answer wrong


@dataclass(frozen=True)
class Row:
    threshold: float
    flagged: float  # the comparator's loss rate (cosine below the threshold)
    true_loss: float  # the reference answers' loss rate
    recall: float  # share of true losses flagged
    precision: float  # share of flagged answers that are true losses


def pairs_from(records: Sequence[dict[str, Any]], encoder: Any) -> list[Pair]:
    large = {
        (r["mode"], r["question"]): r
        for r in records
        if r["system"] == "large-only" and not r.get("error")
    }
    small = [
        r
        for r in records
        if r["route"] == "small" and not r.get("error") and (r["mode"], r["question"]) in large
    ]
    if not small:
        raise ValueError("no small-model answer has a large-only answer to the same request")
    theirs = [large[(r["mode"], r["question"])] for r in small]
    a = encoder.encode([r["response"] for r in small], normalize_embeddings=True, batch_size=64)
    b = encoder.encode([r["response"] for r in theirs], normalize_embeddings=True, batch_size=64)
    cosines = np.sum(a * b, axis=1)
    return [
        Pair(float(c), bool(t["correct"]) and not bool(s["correct"]))
        for c, s, t in zip(cosines, small, theirs, strict=True)
    ]


def table(pairs: Sequence[Pair], thresholds: Sequence[float] = THRESHOLDS) -> list[Row]:
    n = len(pairs)
    losses = sum(p.lost for p in pairs)
    rows = []
    for t in thresholds:
        flagged = [p for p in pairs if p.cosine < t]
        hits = sum(p.lost for p in flagged)
        rows.append(
            Row(
                t,
                len(flagged) / n,
                losses / n,
                hits / losses if losses else 1.0,
                hits / len(flagged) if flagged else 0.0,
            )
        )
    return rows


def recommended(rows: Sequence[Row], min_recall: float = 0.8) -> Row | None:
    """The lowest threshold whose flagged rate covers the true loss rate and which flags
    at least ``min_recall`` of the true losses: the estimate errs on the safe side, with
    as few false alarms as that allows."""
    safe = [r for r in rows if r.flagged >= r.true_loss and r.recall >= min_recall]
    return min(safe, key=lambda r: r.threshold) if safe else None


def calibrate(outcomes: Path, encoder: Any, out: Path | None) -> str:
    records = [json.loads(line) for line in outcomes.read_text().splitlines() if line.strip()]
    pairs = pairs_from(records, encoder)
    rows = table(pairs)
    best = recommended(rows)
    lines = [
        f"Agreement comparator on {outcomes} ({len(pairs)} small answers, "
        f"{sum(p.lost for p in pairs)} true losses by the reference answers):",
        "",
        "| threshold | comparator's loss rate | true loss rate | recall | precision |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r.threshold:.2f} | {100 * r.flagged:.1f}% | {100 * r.true_loss:.1f}% "
            f"| {100 * r.recall:.0f}% | {100 * r.precision:.0f}% |"
            for r in rows
        ),
        "",
        (
            f"Lowest threshold that covers the true loss rate with recall >= 80%: "
            f"{best.threshold:.2f}"
            if best
            else "No threshold covers the true loss rate with recall >= 80%."
        ),
    ]
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.md").write_text(text)
        (out / "calibration.json").write_text(
            json.dumps(
                {
                    "outcomes": str(outcomes),
                    "pairs": len(pairs),
                    "rows": [asdict(r) for r in rows],
                    "recommended": best.threshold if best else None,
                },
                indent=2,
            )
            + "\n"
        )
    return text
