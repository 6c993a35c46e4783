"""``iccache bench soak``: many client connections against one router for a long time.

``iccache serve`` runs in its own process over real Redis and the real embedder, with the
instant stand-in for both models, so the router itself is what is loaded. ``connections``
clients (one connection each, closed loop, waiting out Retry-After) send requests for
``minutes``; the router's resident memory and open file descriptors are sampled every
few seconds.
Reported: requests by status, p50/p99 of the admitted (200) and of the refused (429)
ones, 5xx and connection errors, RSS at start and end with a plot over time, and the
descriptors after the clients left (sockets or tasks that leak show up there).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from iccache_dev.bench.load import closed_loop
from iccache_dev.bench.standin import standin_router
from iccache_dev.local.onnx_export import ensure_minilm_onnx
from iccache_dev.local.redis import start_redis

SAMPLE_SECONDS = 5.0


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def embedding_section(runtime: str) -> dict[str, Any]:
    """The router's ``embedding`` settings for ``runtime``: the ONNX export (what the
    router image runs) or the sentence-transformers package (torch)."""
    if runtime == "onnx":
        return {"model_path": str(ensure_minilm_onnx())}
    return {}


async def soak(connections: int, minutes: float, out: Path | None, embedding: str = "onnx") -> int:
    work = Path(tempfile.mkdtemp(prefix="iccache-soak-"))
    redis = start_redis(work / "redis")
    samples = Samples()
    try:
        with standin_router(
            work / "router", redis.url, prefix="soak", embedding=embedding_section(embedding)
        ) as router:
            pid = router.process.proc.pid
            idle_fds = open_fds(pid)
            stop = asyncio.Event()
            load = asyncio.create_task(
                closed_loop(
                    router.url,
                    concurrency=connections,
                    stop=stop,
                    request_timeout=60,
                    unique=True,  # the whole path, no exact repeats
                    honor_retry_after=True,
                )
            )
            start = time.monotonic()
            total = minutes * 60
            with tqdm(total=int(total), unit="s", desc=f"soak, {connections} connections") as bar:
                while (elapsed := time.monotonic() - start) < total:
                    samples.seconds.append(elapsed)
                    samples.rss_mb.append(rss_mb(pid))
                    samples.fds.append(open_fds(pid))
                    bar.n = int(elapsed)
                    bar.set_postfix(rss=f"{samples.rss_mb[-1]:.0f}MB", fds=samples.fds[-1])
                    await asyncio.sleep(SAMPLE_SECONDS)
            stop.set()
            results = await load
            await asyncio.sleep(10)  # idle keep-alive connections close after 5 s
            after_fds = open_fds(pid)
            after_rss = rss_mb(pid)
            alive = router.process.exit_message() is None
    finally:
        redis.stop()
    statuses = Counter(o.status for o in results)
    admitted = [o.seconds for o in results if o.status == 200]
    refused = [o.seconds for o in results if o.status == 429]
    minute = int(60 / SAMPLE_SECONDS)
    half = len(samples.rss_mb) // 2
    report: dict[str, Any] = {
        "connections": connections,
        "embedding": embedding,
        "minutes": minutes,
        "requests": len(results),
        "by_status": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "connection_errors": statuses.get(0, 0),
        "admitted_per_second": len(admitted) / (minutes * 60),
        "admitted_p50_ms": percentile(admitted, 0.5) * 1000,
        "admitted_p99_ms": percentile(admitted, 0.99) * 1000,
        "refused_p50_ms": percentile(refused, 0.5) * 1000,
        "refused_p99_ms": percentile(refused, 0.99) * 1000,
        "rss_mb_first_minute": statistics.mean(samples.rss_mb[: int(60 / SAMPLE_SECONDS)] or [0]),
        "rss_mb_last_minute": statistics.mean(samples.rss_mb[-int(60 / SAMPLE_SECONDS) :] or [0]),
        "rss_mb_max": max(samples.rss_mb or [0]),
        # Growth over the second half: a plateau keeps this near zero; a leak keeps climbing.
        "rss_mb_second_half_growth": statistics.mean(samples.rss_mb[-minute:] or [0])
        - statistics.mean(samples.rss_mb[max(0, half - minute // 2) : half + minute // 2] or [0]),
        "rss_mb_after": after_rss,
        "fds_idle_before": idle_fds,
        "fds_max": max(samples.fds or [0]),
        "fds_after": after_fds,
        "router_alive": alive,
        "samples": asdict(samples),
    }
    # Pools (model backends, Redis) keep connections up to their limits: descriptors may
    # stay above the idle count, but must not grow from the first minute to the last.
    plateau = max(samples.fds[-minute:] or [0]) <= max(samples.fds[:minute] or [0]) + 10
    report["fds_plateau"] = plateau
    print(_table(report))
    if out is not None:
        _write(out, report, samples)
    ok = alive and report["server_errors"] == 0 and plateau and after_fds <= report["fds_max"]
    return 0 if ok else 1


def _write(out: Path, report: dict[str, Any], samples: Samples) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(samples, report["connections"], report["embedding"], out / "soak.png")
    print(f"wrote {out / 'soak.json'} and {out / 'soak.png'}")


def _table(r: dict[str, Any]) -> str:
    rows = [
        ("connections, minutes", f"{r['connections']}, {r['minutes']:g}"),
        ("embedding runtime", r["embedding"]),
        ("requests (by status)", f"{r['requests']} {r['by_status']}"),
        ("5xx / connection errors", f"{r['server_errors']} / {r['connection_errors']}"),
        ("admitted per second", f"{r['admitted_per_second']:.1f}"),
        ("admitted p50 / p99", f"{r['admitted_p50_ms']:.0f} / {r['admitted_p99_ms']:.0f} ms"),
        ("refused (429) p50 / p99", f"{r['refused_p50_ms']:.0f} / {r['refused_p99_ms']:.0f} ms"),
        (
            "RSS first min / last min / max",
            f"{r['rss_mb_first_minute']:.0f} / {r['rss_mb_last_minute']:.0f} / "
            f"{r['rss_mb_max']:.0f} MB",
        ),
        ("RSS growth over the second half", f"{r['rss_mb_second_half_growth']:+.0f} MB"),
        ("RSS after the clients left", f"{r['rss_mb_after']:.0f} MB"),
        (
            "open fds: idle before / max / after",
            f"{r['fds_idle_before']} / {r['fds_max']} / {r['fds_after']}",
        ),
        ("open fds flat from first to last minute", str(r["fds_plateau"])),
        ("router still running", str(r["router_alive"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _plot(samples: Samples, connections: int, embedding: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    minutes = [s / 60 for s in samples.seconds]
    ax.plot(minutes, samples.rss_mb, label="router RSS (MB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    twin = ax.twinx()
    twin.plot(minutes, samples.fds, color="tab:orange", alpha=0.6, label="open fds")
    twin.set_ylabel("open file descriptors")
    twin.set_ylim(bottom=0)
    ax.set_title(f"iccache router under {connections} connections ({embedding} embedder)")
    fig.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
