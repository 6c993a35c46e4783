"""``iccache bench calibrate``: how well "the small answer's embedding agrees with the
large answer's" stands in for "the small answer is no worse", on an earlier run.

Without a judge, the quality budget's shadow comparison counts a small answer as a loss
when its cosine with the large model's answer to the same request is below
``routing.quality.agreement_threshold``. This reads a bench run's ``outcomes.jsonl``,
pairs every small-model answer (any system, same mode) with large-only's answer to the
same request, and, for a range of thresholds, compares the comparator's verdicts with the
reference answers' (a *true loss*: large-only is right and the small answer is not).

With ``--judge MODEL`` it also asks the router's pairwise judge (the same prompt, both
orders, the same rule) about every true loss and a random sample of the other pairs,
and reports its recall, its false-alarm rate and, at the run's base rate, its precision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from iccache_contract.settings import BackendSettings, JudgeSettings
from iccache_dev.bench.stack import model_server
from iccache_dev.local.assets import cache_dir
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.backends.judge import PairwiseJudge
from iccache_sidecar.core.domain import Route, Verdict

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 .. 0.95


@dataclass(frozen=True)
class Pair:
    cosine: float
    lost: bool  # large-only right, the small answer wrong
    question: str = ""
    small: str = ""  # the two answers
    large: str = ""
    wrong: bool = False  # the small answer is wrong (whatever large-only said)


@dataclass(frozen=True)
class JudgeRow:
    losses: int  # true losses asked about
    others: int  # other pairs asked about (a random sample)
    recall: float  # true losses the judge called losses
    false_alarms: float  # other pairs it called losses
    precision: float  # at the run's base rate of true losses
    flagged: float  # the loss rate it would report on the whole run
    ties: int
    unparsed: int


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
        Pair(
            float(c),
            bool(t["correct"]) and not bool(s["correct"]),
            s["question"],
            s["response"],
            t["response"],
            not bool(s["correct"]),
        )
        for c, s, t in zip(cosines, small, theirs, strict=True)
    ]


def judge_row(pairs: Sequence[Pair], verdicts: dict[int, Verdict], base_rate: float) -> JudgeRow:
    """The judge's verdicts (by index into ``pairs``) against the reference answers."""
    asked = [(pairs[i], v) for i, v in verdicts.items()]
    losses = [v for p, v in asked if p.lost]
    others = [v for p, v in asked if not p.lost]
    recall = sum(v is Verdict.LARGE_BETTER for v in losses) / len(losses) if losses else 0.0
    false_alarms = sum(v is Verdict.LARGE_BETTER for v in others) / len(others) if others else 0.0
    flagged = recall * base_rate + false_alarms * (1 - base_rate)
    return JudgeRow(
        len(losses),
        len(others),
        recall,
        false_alarms,
        recall * base_rate / flagged if flagged else 0.0,
        flagged,
        sum(v is Verdict.TIE for _, v in asked),
        sum(v is Verdict.UNPARSED for _, v in asked),
    )


async def ask_judge(
    pairs: Sequence[Pair], judge: PairwiseJudge, others: int, seed: int = 2025
) -> dict[int, Verdict]:
    """Every true loss and ``others`` random other pairs, asked in both orders."""
    lost = [i for i, p in enumerate(pairs) if p.lost]
    rest = [i for i, p in enumerate(pairs) if not p.lost]
    chosen = lost + random.Random(seed).sample(rest, min(others, len(rest)))
    verdicts: dict[int, Verdict] = {}
    for i in tqdm(chosen, desc="judge", unit="pair", dynamic_ncols=True):
        p = pairs[i]
        verdicts[i] = await judge.both_orders(p.question, p.small, p.large)
    return verdicts


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


def calibrate(
    outcomes: Path,
    encoder: Any,
    out: Path | None,
    judge: Callable[[list[Pair]], dict[int, Verdict]] | None = None,
    judge_name: str = "",
) -> str:
    """The agreement table and, with ``judge`` (pairs -> verdicts), the judge's row."""
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
    judged = None
    if judge is not None:
        base = sum(p.lost for p in pairs) / len(pairs)
        judged = judge_row(pairs, judge(pairs), base)
        lines += [
            "",
            f"Pairwise judge {judge_name} (both orders, net preference) on every true loss "
            f"and {judged.others} other pairs drawn at random:",
            "",
            "| recall of true losses | false alarms | precision (at the run's base rate) "
            "| loss rate it would report | ties | unreadable |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {100 * judged.recall:.0f}% ({judged.losses}) | "
            f"{100 * judged.false_alarms:.0f}% ({judged.others}) | "
            f"{100 * judged.precision:.0f}% | {100 * judged.flagged:.1f}% | {judged.ties} | "
            f"{judged.unparsed} |",
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
                    "judge": {"model": judge_name, **asdict(judged)} if judged else None,
                },
                indent=2,
            )
            + "\n"
        )
    return text


@contextlib.contextmanager
def judged_by(model: str, others: int) -> Iterator[Callable[[list[Pair]], dict[int, Verdict]]]:
    """A judge model (a ``MODEL_CHOICES`` name) served here with every core, as the
    router would ask it; yields pairs -> verdicts."""
    with model_server(cache_dir() / "bench" / "judge", model, os.cpu_count() or 1) as server:

        async def run(pairs: list[Pair]) -> dict[int, Verdict]:
            settings = BackendSettings(base_url=server.base_url, model=model)
            large = Backend(Route.LARGE, settings)  # the judge's own, never asked here
            judge = PairwiseJudge(JudgeSettings(base_url=server.base_url, model=model), large)
            try:
                return await ask_judge(pairs, judge, others)
            finally:
                await judge.close()
                await large.close()

        yield lambda pairs: asyncio.run(run(pairs))
