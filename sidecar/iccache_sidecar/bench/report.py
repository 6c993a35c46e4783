"""Figures from outcomes: a row per (mode, system), written as JSON, Markdown and a PNG."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iccache_sidecar.bench.scoring import contains_answer, percentile, wilson
from iccache_sidecar.bench.systems import Outcome
from iccache_sidecar.bench.workloads import Item

AGREEMENT_SIMILARITY = 0.8  # MiniLM cosine at which two answers count as saying the same


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
        "system": system, "mode": mode, "requests": len(outcomes),
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
    }  # fmt: skip
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


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown(rows: Sequence[dict[str, Any]], header: str) -> str:
    base = {r["mode"]: r for r in rows if r["system"] == "large-only"}
    lines = [
        header, "",
        "| mode | system | requests | offload | throughput (req/s) | p50 latency (s) | "
        "p99 latency (s) | p50 TTFT (s) | accuracy [95% CI] | agreement with large [95% CI] "
        "| cost (rel. to large-only) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]  # fmt: skip
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
    return "\n".join(lines) + "\n"


# What each mode's panel puts on the x axis: at saturation throughput differs between
# systems; at a fixed arrival rate every system has the same throughput, latency differs.
PANELS = {
    "saturation": ("throughput", "throughput (requests/s), saturation"),
    "rate": ("p50_latency", "p50 latency (s), fixed Poisson rate"),
}


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in PANELS if any(r["mode"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        key, label = PANELS[mode]
        for r in (r for r in rows if r["mode"] == mode):
            lo, hi = r["accuracy_ci"]
            y = 100 * r["accuracy"]
            ax.errorbar(r[key], y, yerr=[[y - 100 * lo], [100 * hi - y]],
                        fmt="o", capsize=3, label=r["system"])  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (%), 95% CI")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(
    rows: Sequence[dict[str, Any]],
    meta: dict[str, Any],
    out: Path,
    records: Sequence[dict[str, Any]] = (),
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "outcomes.jsonl").open("w") as f:  # every request, for auditing
        f.writelines(json.dumps(r) + "\n" for r in records)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=2))
    header = (
        f"`{meta['command']}` — {meta['workload']} ({meta['style']} answers), small "
        f"{meta['small']}, large {meta['large']}, {meta['requests']} requests "
        f"({_pct(meta['near_share'])} with an earlier similar question), "
        f"{meta['seeds']} cached examples, {meta['machine']}."
    )
    (out / "results.md").write_text(markdown(rows, header))
    plot(rows, out / "results.png", f"{meta['workload']} ({meta['style']} answers)")
