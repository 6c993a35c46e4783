"""``iccache demo``: the whole stack on this machine, a real data set, one table.

Starts Redis with search, the small and large llama.cpp models and the router; seeds the
cache with the large model's answers to earlier Natural Questions; sends new questions
through the large model alone, through iccache with the bandit (the router's default) and
through iccache in verify mode (the bandit, with every small answer checked by the large
model's token log-probabilities before it is returned, and each check teaching the
bandit); prints what iccache bought. Stops everything it started, also on Ctrl-C.
"""

from __future__ import annotations

import os
from typing import Any

from iccache_dev.bench.run import BenchConfig, run_bench


def table(rows: list[dict[str, Any]]) -> str:
    head = ("system", "requests", "offload", "p50 s", "p99 s", "req/s", "accuracy [95% CI]", "cost")
    base = next(r for r in rows if r["system"] == "large-only")
    lines = [head]
    for r in rows:
        lo, hi = r["accuracy_ci"]
        lines.append(
            (
                r["system"],
                str(r["requests"]),
                f"{100 * r['offload']:.0f}%",
                f"{r['p50_latency']:.2f}",
                f"{r['p99_latency']:.2f}",
                f"{r['throughput']:.2f}",
                f"{100 * r['accuracy']:.1f}% [{100 * lo:.0f}-{100 * hi:.0f}]",
                f"{r['cost'] / base['cost']:.2f}x" if base["cost"] else "-",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in lines
    )


async def demo(requests: int, encoder: Any) -> int:
    cfg = BenchConfig(
        requests=requests,
        modes=("saturation",),
        systems=("large-only", "iccache-bandit", "iccache-verify"),
        out=None,
        command="iccache demo",
    )
    print(
        f"iccache demo: {requests} Natural Questions through the large model alone and "
        f"through iccache (small {cfg.small} + examples, large {cfg.large}; the bandit, "
        f"and the bandit in verify mode); "
        f"{os.cpu_count()} CPU cores.",
        flush=True,
    )
    rows = await run_bench(cfg, encoder)
    print()
    print(table(rows))
    print(
        "\ncost: tokens x relative price per token (small 0.1, large 1.0), against "
        "large-only. Accuracy: a reference answer contained in the response."
    )
    return 0
