"""``iccache bench calibrate OUTCOMES --verifier``: every comparator on the same labelled
small answers, side by side.

The label is a *loss*: the small answer is wrong where large-only's answer to the same
request is right (by the reference answers). Each comparator gives a loss score per
small answer (higher: more likely a loss):

- ``agreement``: 1 - the cosine of the two answers' embeddings (needs the large answer);
- ``verifier``: the large model's token log-probabilities of the small answer, one
  prefill through the router's own verifier client (mean, minimum, share of positions
  where the draft token is the large model's top one; each negated);
- ``large confidence``: the large model's least top-token log-probability over its own
  first 16 answer tokens (the probe in the design notes found it ranks losses: a loss
  needs the large model to be right);
- ``verifier + confidence``: a logistic regression on both, cross-validated (5 folds);
- ``judge`` (with ``--judge``): the pairwise judge's verdict on the true losses and a
  random sample of the rest.

For each: ROC-AUC with a 95% bootstrap interval, precision and recall when it flags as
many answers as there are true losses, the same for *wrong* small answers, and its cost
in model-seconds per answer, measured here on the same server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from iccache_contract.settings import BackendSettings, OpeningSettings, VerifierSettings
from iccache_dev.bench.calibrate import Pair
from iccache_dev.bench.prepare import STYLES, AnswerStyle
from iccache_dev.bench.systems import SEMANTIC_THRESHOLD
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.backends.verifier import LogprobVerifier
from iccache_sidecar.core.domain import (
    ChatMessage,
    GenerationParams,
    Route,
    Verdict,
    estimate_tokens,
)
from iccache_sidecar.core.verification import DraftScore, TokenView, roc_auc

OPENING_TOKENS = OpeningSettings().tokens  # the opening the router reads
BOOTSTRAP_ROUNDS = 1000


@dataclass(frozen=True)
class Labelled:
    pair: Pair
    wrong: bool  # the small answer is wrong (whatever large said)
    draft: DraftScore | None
    confidence: float | None  # large's least top logprob over its first 16 tokens


@dataclass(frozen=True)
class ComparatorRow:
    name: str
    answers: int
    losses: int
    auc_loss: float
    auc_loss_low: float
    auc_loss_high: float
    precision_loss: float  # flagging as many as there are true losses
    recall_loss: float
    auc_wrong: float
    seconds_per_answer: float | None  # model-seconds to get this comparator's score


def auc_interval(
    scores: Sequence[float], labels: Sequence[bool], rounds: int = BOOTSTRAP_ROUNDS, seed: int = 7
) -> tuple[float, float, float]:
    """ROC-AUC and its 95% percentile bootstrap interval (answers resampled)."""
    auc = roc_auc(scores, labels)
    rng = np.random.default_rng(seed)
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    draws = []
    for _ in range(rounds):
        pick = rng.integers(0, len(s), len(s))
        if y[pick].all() or not y[pick].any():
            continue
        draws.append(roc_auc(s[pick].tolist(), y[pick].tolist()))
    low, high = np.percentile(draws, [2.5, 97.5]).tolist() if draws else [np.nan, np.nan]
    return auc, float(low), float(high)


def at_base_rate(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """Precision and recall when the highest-scoring k answers are flagged, k being the
    number of positives (so precision equals recall; the base rate is what chance gets)."""
    k = sum(labels)
    if k == 0:
        return 0.0, 0.0
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:k]
    hits = sum(labels[i] for i in order)
    return hits / k, hits / k


def cross_validated(features: np.ndarray, labels: Sequence[bool], folds: int = 5) -> list[float]:
    """Out-of-fold probabilities of a logistic regression (standardised features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    y = np.asarray(labels, dtype=int)
    if y.sum() < folds:
        return [0.0] * len(y)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    proba = cross_val_predict(model, features, y, cv=cv, method="predict_proba")
    return [float(p) for p in proba[:, 1]]


def row(
    name: str,
    items: Sequence[Labelled],
    score: Callable[[Labelled], float | None],
    seconds: float | None,
) -> ComparatorRow:
    kept = [(s, it) for it in items if (s := score(it)) is not None]
    scores = [s for s, _ in kept]
    losses = [it.pair.lost for _, it in kept]
    auc, low, high = auc_interval(scores, losses)
    precision, recall = at_base_rate(scores, losses)
    return ComparatorRow(
        name,
        len(kept),
        sum(losses),
        auc,
        low,
        high,
        precision,
        recall,
        roc_auc(scores, [it.wrong for _, it in kept]),
        seconds,
    )


def messages_for(style: AnswerStyle, question: str) -> list[ChatMessage]:
    return [ChatMessage("system", style.system), ChatMessage("user", question)]


async def score_all(
    pairs: Sequence[Pair], style: AnswerStyle, base_url: str, model: str
) -> tuple[list[Labelled], dict[str, float]]:
    """Verifier scores of every small answer and large confidence of every question,
    through the router's verifier client; and the measured costs."""
    verifier = LogprobVerifier(
        VerifierSettings(enabled=True, timeout_seconds=600),
        BackendSettings(base_url=base_url, model=model),
    )
    if await verifier.detect() == "none":
        raise RuntimeError(f"{base_url} returns no prompt log-probabilities")
    order = sorted(range(len(pairs)), key=lambda i: pairs[i].question)  # shared prefixes
    drafts: dict[int, DraftScore | None] = {}
    confidence: dict[str, float | None] = {}
    try:
        for i in tqdm(order, desc="verifier", unit="answer", dynamic_ncols=True):
            p = pairs[i]
            messages = messages_for(style, p.question)
            if p.question not in confidence:
                own = await verifier.token_views(messages, p.large)
                confidence[p.question] = opening_confidence(own[0]) if own else None
            done = await verifier.verify(messages, p.small)
            drafts[i] = done.score if done else None
        costs = await _costs(verifier, pairs, style, base_url, model)
    finally:
        await verifier.close()
    items = [
        Labelled(p, p.wrong, drafts.get(i), confidence.get(p.question)) for i, p in enumerate(pairs)
    ]
    return items, costs


def opening_confidence(views: Sequence[TokenView]) -> float | None:
    """The least top-token log-probability over the first 16 tokens of the large model's
    own greedy answer (read from one prefill of it: its tokens are the top ones)."""
    return min((v.top_logprob for v in views[:OPENING_TOKENS]), default=None)


async def _costs(
    verifier: LogprobVerifier,
    pairs: Sequence[Pair],
    style: AnswerStyle,
    base_url: str,
    model: str,
    sample: int = 12,
) -> dict[str, float]:
    """Model-seconds per answer of a check, of a whole large answer and of its first 16
    tokens, measured back to back on the same sample of questions and the same server
    (so that other load on the machine weighs on all three alike)."""
    backend = Backend(Route.LARGE, BackendSettings(base_url=base_url, model=model))
    chosen = random.Random(5).sample(list(pairs), min(sample, len(pairs)))
    spent: dict[str, list[float]] = {"verifier": [], "large answer": [], "large opening": []}
    try:
        for n, p in enumerate(tqdm(chosen, desc="costs", unit="question", dynamic_ncols=True)):
            # a prefix of its own for each call: no prompt cache between them
            for kind, tokens in (("large answer", style.max_tokens), ("large opening", 16)):
                messages = messages_for(style, f"{p.question} ({kind} {n})")
                started = time.monotonic()
                await backend.complete(
                    messages, GenerationParams(max_tokens=tokens, temperature=0.0)
                )
                spent[kind].append(time.monotonic() - started)
            done = await verifier.verify(messages_for(style, f"{p.question} (check {n})"), p.small)
            if done is not None:
                spent["verifier"].append(done.seconds)
    finally:
        await backend.close()
    return {kind: float(np.mean(values)) for kind, values in spent.items() if values}


def comparator_rows(
    items: Sequence[Labelled],
    costs: dict[str, float],
    judged: dict[int, Verdict] | None = None,
    judge_seconds: float | None = None,
) -> list[ComparatorRow]:
    large = costs.get("large answer")
    rows = [
        # agreement needs the large model's whole answer (two embeddings are milliseconds)
        row("agreement (1 - cosine)", items, lambda it: 1 - it.pair.cosine, large),
        row(
            "verifier: -mean logprob",
            items,
            lambda it: -it.draft.mean_logprob if it.draft else None,
            costs["verifier"],
        ),
        row(
            "verifier: -min logprob",
            items,
            lambda it: -it.draft.min_logprob if it.draft else None,
            costs["verifier"],
        ),
        row(
            "verifier: -top agreement",
            items,
            lambda it: -it.draft.agreement if it.draft else None,
            costs["verifier"],
        ),
        row(
            "large confidence at the answer's first token (in the verifier's prefill)",
            items,
            lambda it: it.draft.first_top_logprob if it.draft else None,
            costs["verifier"],
        ),
        row(
            "large confidence (own first 16 tokens)",
            items,
            lambda it: it.confidence,
            costs.get("large opening"),
        ),
    ]
    both = [it for it in items if it.draft is not None and it.confidence is not None]
    if both:
        features = np.array(
            [
                [
                    it.draft.mean_logprob,
                    it.draft.min_logprob,
                    it.draft.agreement,
                    it.draft.first_top_logprob,
                    it.confidence,
                ]
                for it in both
                if it.draft is not None and it.confidence is not None
            ]
        )
        fitted = dict(
            zip(
                map(id, both), cross_validated(features, [it.pair.lost for it in both]), strict=True
            )
        )
        opening = costs.get("large opening")
        rows.append(
            row(
                "verifier + confidence (logistic, 5-fold CV)",
                both,
                lambda it: fitted[id(it)],
                costs["verifier"] + opening if opening is not None else None,
            )
        )
    if judged:
        value = {Verdict.LARGE_BETTER: 1.0, Verdict.SMALL_BETTER: 0.0}
        asked = [items[i] for i in judged]
        verdict_of = {id(items[i]): value.get(v, 0.5) for i, v in judged.items()}
        rows.append(
            row(
                f"judge (both orders; {len(asked)} asked)",
                asked,
                lambda it: verdict_of[id(it)],
                # it compares with a large answer, which has to be made first
                judge_seconds + large if judge_seconds is not None and large else None,
            )
        )
    return rows


def render(rows: Sequence[ComparatorRow], items: Sequence[Labelled], source: str) -> str:
    n = len(items)
    losses = sum(it.pair.lost for it in items)
    wrong = sum(it.wrong for it in items)
    lines = [
        f"Comparators on {source}: {n} small answers, {losses} true losses "
        f"({100 * losses / n:.1f}%: small wrong, large-only right), {wrong} wrong small "
        "answers. Chance is AUC 0.50 and precision at the base rate.",
        "",
        "| comparator | answers (losses) | ROC-AUC, loss [95% CI] | precision = recall at "
        "k = losses (chance) | ROC-AUC, small wrong | model-seconds per answer |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        cost = f"{r.seconds_per_answer:.2f}" if r.seconds_per_answer is not None else "-"
        lines.append(
            f"| {r.name} | {r.answers} ({r.losses}) | {r.auc_loss:.2f} [{r.auc_loss_low:.2f}, "
            f"{r.auc_loss_high:.2f}] | {100 * r.precision_loss:.0f}% "
            f"({100 * r.losses / max(1, r.answers):.0f}%) | {r.auc_wrong:.2f} | {cost} |"
        )
    return "\n".join(lines) + "\n"


def write(
    out: Path,
    text: str,
    rows: Sequence[ComparatorRow],
    costs: dict[str, float],
    items: Sequence[Labelled],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparators.md").write_text(text)
    with (out / "scores.jsonl").open("w") as f:  # every answer's scores, for re-analysis
        for it in items:
            row_ = {
                "question": it.pair.question,
                "small": it.pair.small,
                "large": it.pair.large,
                "lost": it.pair.lost,
                "wrong": it.wrong,
                "cosine": round(it.pair.cosine, 4),
                "confidence": it.confidence,
                **({k: v for k, v in asdict(it.draft).items()} if it.draft else {}),
            }
            f.write(json.dumps(row_) + "\n")
    (out / "comparators.json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "costs": costs}, indent=2) + "\n"
    )


def style_of(outcomes: Path) -> tuple[AnswerStyle, str]:
    """The run's answer style and large model, from its results.json."""
    meta: dict[str, Any] = json.loads((outcomes.parent / "results.json").read_text())["meta"]
    return STYLES[meta["style"]], str(meta["large"])


def run_scoring(
    pairs: Sequence[Pair], style: AnswerStyle, base_url: str, model: str
) -> tuple[list[Labelled], dict[str, float]]:
    return asyncio.run(score_all(pairs, style, base_url, model))


def roc_points(scores: Sequence[float], labels: Sequence[bool]) -> tuple[list[float], list[float]]:
    """False and true positive rates as the flagging threshold falls."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    pos = sum(labels) or 1
    neg = (len(labels) - sum(labels)) or 1
    fpr, tpr, tp, fp = [0.0], [0.0], 0, 0
    for i in order:
        tp += labels[i]
        fp += not labels[i]
        fpr.append(fp / neg)
        tpr.append(tp / pos)
    return fpr, tpr


def plot(out: Path, items: Sequence[Labelled], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, Callable[[Labelled], float | None]] = {
        "agreement": lambda it: 1 - it.pair.cosine,
        "verifier -mean logprob": lambda it: -it.draft.mean_logprob if it.draft else None,
        "verifier -top agreement": lambda it: -it.draft.agreement if it.draft else None,
        "large confidence, first token": lambda it: (
            it.draft.first_top_logprob if it.draft else None
        ),
        "large confidence, 16 tokens": lambda it: it.confidence,
    }
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, score in curves.items():
        kept = [(s, it.pair.lost) for it in items if (s := score(it)) is not None]
        fpr, tpr = roc_points([s for s, _ in kept], [y for _, y in kept])
        auc = roc_auc([s for s, _ in kept], [y for _, y in kept])
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("false alarms (answers that are no loss, flagged)")
    ax.set_ylabel("losses found")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "comparators.png", dpi=110)
    plt.close(fig)


def compare(
    outcomes: Path,
    encoder: Any,
    out: Path | None,
    threads: int,
    judge: Callable[[list[Pair]], dict[int, Verdict]] | None = None,
) -> str:
    """Score every small answer of ``outcomes`` by every comparator; write the table,
    the JSON and the ROC plot into ``out``."""
    from iccache_dev.bench.calibrate import pairs_from
    from iccache_dev.bench.stack import model_server
    from iccache_dev.local.assets import cache_dir

    records = [json.loads(line) for line in outcomes.read_text().splitlines() if line.strip()]
    pairs = pairs_from(records, encoder)
    style, large = style_of(outcomes)
    with model_server(cache_dir() / "bench" / "verifier", large, threads) as server:
        items, costs = run_scoring(pairs, style, server.base_url, large)
    judged, judge_seconds = None, None
    if judge is not None:
        started = time.monotonic()
        judged = judge(list(pairs))
        judge_seconds = (time.monotonic() - started) / max(1, len(judged))
        costs["judge"] = judge_seconds
    rows = comparator_rows(items, costs, judged, judge_seconds)
    text = render(rows, items, str(outcomes))
    if out is not None:
        write(out, text, rows, costs, items)
        plot(out, items, f"Loss detection on {outcomes.parent.name} ({style.name} answers)")
    return text


# The verify-mode rules the cascade table replays: the pass threshold on the mean token
# log-probability, alone and with "or the large model is unsure how to begin".
CASCADE_THRESHOLDS = (-0.5, -1.0, -1.5, -2.0, -3.0)
CASCADE_UNSURE = (-2.4, -2.0)
# Opening routing's bars (opening.unsure_below): the large model begins; where the least
# top-token log-probability of its first 16 tokens is below the bar, the draft answers.
OPENING_BARS = (-1.5, -1.75, -2.0, -2.25, -2.5, -3.0)


def cascade(outcomes: Path, scores: Path) -> str:
    """Replay verify mode on every drafted answer of a run (``scores.jsonl`` of a
    ``--verifier`` run): a draft is kept when its check passes, else the large model's
    recorded answer counts. For each rule: the share kept (offload) and the accuracy
    difference to large-only on the same requests, with a paired 95% interval, next to
    keeping a random share of the same size."""
    records = [json.loads(line) for line in outcomes.read_text().splitlines() if line.strip()]
    large_right = {
        r["question"]: bool(r["correct"]) for r in records if r["system"] == "large-only"
    }
    rows = [json.loads(line) for line in scores.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "mean_logprob" in r and r["question"] in large_right]
    small = np.array([not r["wrong"] for r in rows], dtype=float)
    large = np.array([large_right[r["question"]] for r in rows], dtype=float)
    mean = np.array([r["mean_logprob"] for r in rows])
    first = np.array([r["first_top_logprob"] for r in rows])
    confidence = np.array(
        [np.nan if r.get("confidence") is None else r["confidence"] for r in rows]
    )
    # An answer that ends within its opening is kept (the rule never hands it over).
    ended = np.array([estimate_tokens(r.get("large") or "-" * 99) < OPENING_TOKENS for r in rows])
    rng = np.random.default_rng(11)
    n = len(rows)

    def line(name: str, kept: np.ndarray, answer: np.ndarray = small) -> str:
        diff = (answer - large) * kept
        half = 1.96 * diff.std(ddof=1) / np.sqrt(n)
        chance = np.mean(
            [((small - large) * (rng.random(n) < kept.mean())).mean() for _ in range(200)]
        )
        return (
            f"| {name} | {100 * kept.mean():.1f}% | {100 * diff.mean():+.2f} "
            f"[{100 * (diff.mean() - half):+.2f}, {100 * (diff.mean() + half):+.2f}] "
            f"| {100 * chance:+.2f} |"
        )

    out = [
        f"Verify mode replayed on {n} drafted answers of {outcomes} (each draft kept when "
        "the rule passes it, else large-only's answer to the same request counts); "
        "accuracy difference to large-only in points, paired 95% interval:",
        "",
        "| rule | offload | vs large-only | random offload of the same share |",
        "|---|---:|---|---:|",
    ]
    for t in CASCADE_THRESHOLDS:
        out.append(line(f"mean logprob >= {t}", (mean >= t).astype(float)))
    for u in CASCADE_UNSURE:
        for t in (-0.5, -1.0):
            out.append(
                line(
                    f"mean >= {t}, or large's top first token < {u}",
                    ((mean >= t) | (first < u)).astype(float),
                )
            )
    out += [
        "",
        "Opening routing replayed on the same drafts (no check of the draft: the large "
        f"model's own first {OPENING_TOKENS} tokens decide; an answer of the large model "
        f"shorter than {OPENING_TOKENS} tokens, by a 4-bytes-a-token estimate, is kept):",
        "",
        "| rule | offload | vs large-only | random offload of the same share |",
        "|---|---:|---|---:|",
    ]
    for bar in OPENING_BARS:
        handed = (confidence < bar) & ~ended  # NaN compares False: kept
        out.append(line(f"large unsure of its opening (< {bar})", handed.astype(float)))
    # With reuse (routing.reuse_similarity) first: where the run's plain semantic cache
    # answered from the cache (its bar is the reuse bar), its recorded answer counts.
    cached = {
        r["question"]: bool(r["correct"])
        for r in records
        if r["system"] == "semantic-cache" and r["route"] == "cache"
    }
    if any(r["system"] == "semantic-cache" for r in records):
        reused = np.array([r["question"] in cached for r in rows])
        answer = np.where(reused, [cached.get(r["question"], False) for r in rows], small)
        out += [
            "",
            f"With reuse first (the nearest cached answer at similarity >= "
            f"{SEMANTIC_THRESHOLD}: {100 * reused.mean():.1f}% of these drafts' requests, "
            "the semantic cache's recorded answers), then opening routing:",
            "",
            "| rule | offload | vs large-only | random offload of the same share |",
            "|---|---:|---|---:|",
            line("reuse only", reused.astype(float), answer),
        ]
        for bar in OPENING_BARS:
            handed = reused | ((confidence < bar) & ~ended)
            out.append(line(f"reuse, then opening (< {bar})", handed.astype(float), answer))
    return "\n".join(out) + "\n"
