"""Figures from outcomes: a row per (mode, system), written as JSON, Markdown and a PNG,
with each system's accuracy compared, request by request, to the baselines'."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iccache_dev.bench.scoring import contains_answer, paired_difference, percentile, wilson
from iccache_dev.bench.systems import Outcome
from iccache_dev.bench.workloads import Item

AGREEMENT_SIMILARITY = 0.8  # MiniLM cosine at which two answers count as saying the same
BASELINES = ("large-only", "small-only", "semantic-cache")  # what iccache must be judged by


def summarise(
    system: str,
    mode: str,
    items: Sequence[Item],
    outcomes: Sequence[Outcome],
    wall: float,
    tokens: dict[str, int],
    costs: dict[str, float],
    agreement: Sequence[bool] | None,
) -> dict[str, Any]:
    ok = [(i, o) for i, o in zip(items, outcomes, strict=True) if not o.error]
    correct = sum(contains_answer(o.response, i.answers) for i, o in ok)
    served = [o for _, o in ok if o.route in ("small", "large", "cache", "exact")]
    offloaded = sum(1 for o in served if o.route in ("small", "cache", "exact"))
    row: dict[str, Any] = {
        "system": system,
        "mode": mode,
        "requests": len(outcomes),
        "errors": len(outcomes) - len(ok),
        "offload": offloaded / len(served) if served else 0.0,
        "p50_latency": percentile([o.latency for _, o in ok], 0.5),
        "p99_latency": percentile([o.latency for _, o in ok], 0.99),
        "p50_ttft": percentile([o.ttft for _, o in ok if o.ttft], 0.5),
        "throughput": len(ok) / wall if wall else 0.0,
        "accuracy": correct / len(ok) if ok else 0.0,
        "accuracy_ci": wilson(correct, len(ok)),
        "tokens": tokens,
        "cost": sum(tokens.get(k, 0) * costs[k] for k in costs),
    }
    if agreement is not None:
        agreed = sum(agreement)
        row["agreement"] = agreed / len(agreement) if agreement else 0.0
        row["agreement_ci"] = wilson(agreed, len(agreement))
    return row


def agreement_with(encoder: Any, responses: Sequence[str], reference: Sequence[str]) -> list[bool]:
    """Whether each response says what the large model said to the same request."""
    a = encoder.encode(list(responses), normalize_embeddings=True, batch_size=64)
    b = encoder.encode(list(reference), normalize_embeddings=True, batch_size=64)
    return [bool(x) for x in (np.sum(a * b, axis=1) >= AGREEMENT_SIMILARITY)]


def compare(rows: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]]) -> None:
    """Add to each row ``versus``: its accuracy minus each baseline's on the same requests
    of the same mode, with a paired 95% interval. ``records`` are the per-request
    outcomes (mode, system, question, correct) in request order."""
    correct: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for r in records:
        correct.setdefault((r["mode"], r["system"]), []).append((r["question"], bool(r["correct"])))
    for row in rows:
        mine = correct.get((row["mode"], row["system"]))
        versus: dict[str, dict[str, Any]] = {}
        for base in BASELINES:
            theirs = correct.get((row["mode"], base))
            if base == row["system"] or mine is None or theirs is None:
                continue
            if [q for q, _ in mine] != [q for q, _ in theirs]:
                raise ValueError(
                    f"{row['system']} and {base} ({row['mode']}) did not answer "
                    "the same requests; they cannot be compared pairwise"
                )
            diff, lo, hi = paired_difference([c for _, c in mine], [c for _, c in theirs])
            versus[base] = {"difference": diff, "ci": [lo, hi]}
        row["versus"] = versus


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def feedback_label(rate: float) -> str:
    """What feedback the learning systems received, for every report."""
    if rate <= 0:
        return "no feedback"
    if rate >= 1:
        return "oracle feedback: the reference answer's verdict after every request"
    return f"reference-based feedback on {rate:.0%} of requests"


def markdown(rows: Sequence[dict[str, Any]], header: str) -> str:
    base = {r["mode"]: r for r in rows if r["system"] == "large-only"}
    lines = [
        header,
        "",
        "| mode | system | requests | offload | throughput (req/s) | p50 latency (s) | "
        "p99 latency (s) | p50 TTFT (s) | accuracy [95% CI] | agreement with large [95% CI] "
        "| cost (rel. to large-only) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        ref = base.get(r["mode"])
        rel_cost = f"{r['cost'] / ref['cost']:.2f}" if ref and ref["cost"] else "-"
        lo, hi = r["accuracy_ci"]
        acc = f"{_pct(r['accuracy'])} [{_pct(lo)}, {_pct(hi)}]"
        agree = "-"
        if "agreement" in r:
            alo, ahi = r["agreement_ci"]
            agree = f"{_pct(r['agreement'])} [{_pct(alo)}, {_pct(ahi)}]"
        lines.append(
            f"| {r['mode']} | {r['system']} | {r['requests']} | {_pct(r['offload'])} | "
            f"{r['throughput']:.2f} | {r['p50_latency']:.2f} | {r['p99_latency']:.2f} | "
            f"{r['p50_ttft']:.2f} | {acc} | {agree} | {rel_cost} |"
        )
    compared = [r for r in rows if r.get("versus")]
    if compared:
        lines += [
            "",
            "Accuracy minus each baseline's on the same requests, in points, with a "
            "paired 95% interval (only the requests on which the two disagree count):",
            "",
            "| mode | system | " + " | ".join(f"vs {b}" for b in BASELINES) + " |",
            "|---|---|" + "---|" * len(BASELINES),
        ]
        for r in compared:
            cells = []
            for baseline in BASELINES:
                v = r["versus"].get(baseline)
                cells.append(
                    f"{_points(v['difference'])} [{_points(v['ci'][0])}, {_points(v['ci'][1])}]"
                    if v
                    else "-"
                )
            lines.append(f"| {r['mode']} | {r['system']} | " + " | ".join(cells) + " |")
    budgeted = [r for r in rows if r.get("quality")]
    if budgeted:
        lines += [
            "",
            "Each router's quality budget after its run, as its `/quality` reported it: the "
            "judged small answers the estimate counts at the final bar (and how many counted "
            "as losses: a comparator's loss, or a failed check where the verifier is the "
            "comparator), the loss "
            "rate's upper bound, the bar's offset, the shadow comparisons by result, and the "
            "verifier's checks by result (where it ran):",
            "",
            "| mode | system | max loss | judged (counted as losses) | loss [bound] | bar offset "
            "| holds | shadow: loss / no loss / skipped | checks: pass / fail / skipped |",
            "|---|---|---:|---:|---|---:|---|---|---|",
        ]
        for r in budgeted:
            q = r["quality"]
            sh = q["shadow"]
            ve = q.get("verified")
            checks = f"{ve['pass']} / {ve['fail']} / {ve['skipped']}" if ve else "-"
            budget = "-" if q["max_loss"] is None else _pct(q["max_loss"])
            holds = "-" if q["holds"] is None else ("yes" if q["holds"] else "no")
            lines.append(
                f"| {r['mode']} | {r['system']} | {budget} | {q['samples']} ({q['losses']}) | "
                f"{_pct(q['loss'])} [{_pct(q['lower'])}, {_pct(q['upper'])}] | "
                f"{q['bar_offset']:+.2f} | {holds} | "
                f"{sh['loss']} / {sh['no_loss']} / {sh['skipped']} | {checks} |"
            )
    return "\n".join(lines) + "\n"


# What each mode's panel puts on the x axis: at saturation throughput differs between
# systems; at a fixed arrival rate every system has the same throughput, latency differs.
PANELS = {
    "saturation": ("throughput", "throughput (requests/s), saturation"),
    "rate": ("p50_latency", "p50 latency (s), fixed Poisson rate"),
}


@contextlib.contextmanager
def _panels(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Iterator[list[Any]]:
    """A figure with one panel (axes) per mode present in ``rows``, in ``PANELS`` order,
    saved to ``path`` on exit; yields [(axes, mode), ...]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in PANELS if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    yield list(zip(axes[0], modes, strict=True))
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    with _panels(rows, path, title) as panels:
        for ax, mode in panels:
            _accuracy_panel(ax, mode, rows)


def _accuracy_panel(ax: Any, mode: str, rows: Sequence[dict[str, Any]]) -> None:
    key, label = PANELS[mode]
    for r in (r for r in rows if r["mode"] == mode):
        lo, hi = r["accuracy_ci"]
        y = 100 * r["accuracy"]
        ax.errorbar(
            r[key],
            y,
            yerr=[[y - 100 * lo], [100 * hi - y]],
            fmt="o",
            capsize=3,
            label=r["system"],
        )
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy (%), 95% CI")


SAME = {"difference": 0.0, "ci": [0.0, 0.0]}  # large-only against itself


def plot_tradeoff(rows: Sequence[dict[str, Any]], path: Path, title: str) -> bool:
    """Offload against the paired accuracy difference to large-only, one panel per mode;
    the iccache systems joined in order of offload (the budget curve). False (and no
    file) when no row was compared with large-only."""
    compared = [r for r in rows if "large-only" in r.get("versus", {})]
    if not compared:
        return False
    compared += [r for r in rows if r["system"] == "large-only"]  # at (0, 0)
    with _panels(compared, path, title) as panels:
        for ax, mode in panels:
            _tradeoff_panel(ax, mode, compared)
    return True


def _tradeoff_panel(ax: Any, mode: str, compared: Sequence[dict[str, Any]]) -> None:
    mine = sorted((r for r in compared if r["mode"] == mode), key=lambda r: r["offload"])
    curve = [r for r in mine if r["system"].startswith("iccache")]
    ax.plot(
        [100 * r["offload"] for r in curve],
        [100 * r["versus"].get("large-only", SAME)["difference"] for r in curve],
        color="grey",
        alpha=0.5,
    )
    for r in mine:
        v = r["versus"].get("large-only", SAME)
        y = 100 * v["difference"]
        ax.errorbar(
            100 * r["offload"],
            y,
            yerr=[[y - 100 * v["ci"][0]], [100 * v["ci"][1] - y]],
            fmt="o",
            capsize=3,
            label=r["system"],
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"offload to the small model (%), {mode}")
    ax.set_ylabel("accuracy minus large-only's (points), paired 95% CI")


def write(
    rows: Sequence[dict[str, Any]],
    meta: dict[str, Any],
    out: Path,
    records: Sequence[dict[str, Any]] = (),
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    compare(rows, records)
    with (out / "outcomes.jsonl").open("w") as f:  # every request, for auditing
        f.writelines(json.dumps(r) + "\n" for r in records)
    render(rows, meta, out)


def render(rows: Sequence[dict[str, Any]], meta: dict[str, Any], out: Path) -> None:
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2))
    header = (
        f"`{meta['command']}` — {meta['workload']} ({meta['style']} answers), small "
        f"{meta['small']}, large {meta['large']}, {meta['requests']} requests "
        f"({_pct(meta['near_share'])} with an earlier similar question), "
        f"{meta['seeds']} cached examples, {meta['machine']}; the learning systems got "
        f"{meta.get('feedback', feedback_label(1.0))}."
    )
    for command in meta.get("merged", ()):
        header += (
            f" Merged with `{command}`, a separate run of the same requests (accuracy is "
            "paired request by request; throughput and latency come from different runs)."
        )
    planned = meta.get("planned_runs", len(rows))
    if len(rows) < planned:
        header += f" **Partial**: {len(rows)} of {planned} runs so far."
    (out / "results.md").write_text(markdown(rows, header))
    title = f"{meta['workload']} ({meta['style']} answers)"
    plot(rows, out / "results.png", title)
    plot_tradeoff(rows, out / "tradeoff.png", f"{title}: offload against accuracy")


# What two runs must share for their rows to be compared request by request.
SAME_REQUESTS = ("workload", "style", "small", "large", "requests", "rate_requests", "rate")
SAME_SETUP = ("concurrency", "near_share", "seeds", "seed", "feedback_rate", "machine")


def _load(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        results: dict[str, Any] = json.loads((out / "results.json").read_text())
        records = [json.loads(line) for line in (out / "outcomes.jsonl").open()]
    except FileNotFoundError as exc:
        raise ValueError(f"{out} holds no benchmark results: {exc.filename} is missing") from exc
    return results, records


def rerender(out: Path, add: Sequence[Path] = ()) -> dict[str, Any]:
    """Remake results.json/.md/.png of an earlier run from its own files (after a change
    to the report, not to the measurement), with the systems of the runs in ``add``
    merged in (runs of the same requests and setup, each system measured once);
    returns the results."""
    results, records = _load(out)
    for other in add:
        theirs, their_records = _load(other)
        _merge(results, records, theirs, their_records, other)
    compare(results["rows"], records)
    if add:
        with (out / "outcomes.jsonl").open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    render(results["rows"], results["meta"], out)
    return results


def _merge(
    results: dict[str, Any],
    records: list[dict[str, Any]],
    theirs: dict[str, Any],
    their_records: list[dict[str, Any]],
    where: Path,
) -> None:
    meta, other = results["meta"], theirs["meta"]
    for key in (*SAME_REQUESTS, *SAME_SETUP):
        if meta.get(key) != other.get(key):
            raise ValueError(
                f"{where} cannot be merged: its {key} is {other.get(key)!r}, not {meta.get(key)!r}"
            )
    have = {(r["mode"], r["system"]) for r in results["rows"]}
    again = sorted(
        f"{s} ({m})" for m, s in have & {(r["mode"], r["system"]) for r in theirs["rows"]}
    )
    if again:
        raise ValueError(f"{where} cannot be merged: both runs measured {', '.join(again)}")
    # Each run's own plan counts, so a merged run that was cut short still shows as partial.
    meta["planned_runs"] = meta.get("planned_runs", len(results["rows"])) + other.get(
        "planned_runs", len(theirs["rows"])
    )
    results["rows"].extend(theirs["rows"])
    records.extend(their_records)
    meta.setdefault("merged", []).append(other["command"])
