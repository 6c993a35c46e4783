"""The developer verbs of ``iccache``: ``check``, ``demo`` and ``bench``.

Registered with the data plane's command line through the entry-point group
``iccache.commands`` (see devtools/pyproject.toml), so the image, which does not
install this package, has only ``serve`` and ``replay``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


Run: TypeAlias = Callable[[argparse.Namespace, list[str]], int]


def _cleanly(run: Run) -> Run:
    """SIGTERM (``kill``, a CI timeout) unwinds like Ctrl-C, so the servers a verb started
    are stopped; Python's default would end at once and leave them running."""

    def wrapped(args: argparse.Namespace, argv: list[str]) -> int:
        def interrupt(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, interrupt)
        return run(args, argv)

    return wrapped


def register(commands: Commands) -> None:
    check = commands.add_parser(
        "check", help="verify the local binaries and models that setup installed"
    )
    check.set_defaults(run=_cleanly(_check))
    demo = commands.add_parser(
        "demo", help="the main job: the whole stack locally, real questions, one table"
    )
    demo.add_argument("--requests", type=int, default=60, help="questions to send")
    demo.set_defaults(run=_cleanly(_bench))
    _add_bench(commands)


def _add_bench(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="quality and speed of every system on a real workload (default), or `overhead`",
        description="Runs large-only, small-only, a plain semantic cache and iccache with "
        "each routing policy on the same requests, at saturation and at a fixed Poisson "
        "rate, and writes results.json, results.md and results.png.",
    )
    bench.add_argument("--workload", default="nq", help="a data set plug-in (default: nq)")
    bench.add_argument("--requests", type=int, default=320, help="requests at saturation")
    bench.add_argument("--rate-requests", type=int, default=40, help="requests at the rate")
    bench.add_argument("--rate", type=float, default=0.5, help="Poisson arrivals per second")
    bench.add_argument("--concurrency", type=int, default=2, help="in flight at saturation")
    bench.add_argument(
        "--modes", nargs="+", default=["saturation", "rate"], choices=["saturation", "rate"]
    )
    bench.add_argument(
        "--style",
        default="short",
        choices=["short", "long"],
        help="short answers (accuracy) or explained ones (~128 tokens)",
    )
    bench.add_argument("--systems", nargs="+", default=None, help="default: all")
    bench.add_argument("--small", default="smollm2-135m")
    bench.add_argument("--large", default="qwen2.5-coder-1.5b")
    bench.add_argument(
        "--near-share",
        type=float,
        default=0.67,
        help="share of requests with an earlier similar question",
    )
    bench.add_argument(
        "--feedback-rate",
        type=float,
        default=0.1,
        help="share of requests whose outcome (the reference answer's verdict) is sent as "
        "feedback; 1 is the oracle setting, 0 none (default 0.1)",
    )
    bench.add_argument(
        "--feedback",
        choices=["reference", "none"],
        default="reference",
        help="none: no feedback at all (same as --feedback-rate 0)",
    )
    bench.add_argument("--out", type=Path, default=Path("bench-results"))
    bench.set_defaults(run=_cleanly(_bench))
    benches = bench.add_subparsers(dest="bench", metavar="BENCH")
    overhead = benches.add_parser(
        "overhead",
        help="the router's own latency and throughput, models replaced by an instant responder",
    )
    overhead.add_argument(
        "--requests", type=int, default=300, help="requests per concurrency level"
    )
    overhead.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    overhead.add_argument("--seed-examples", type=int, default=800, help="examples in the cache")
    overhead.add_argument("--json", type=Path, default=None, help="also write the figures here")
    overhead.add_argument(
        "--embedding",
        nargs="+",
        default=["onnx", "torch"],
        choices=["onnx", "torch"],
        help="embedding runtimes to measure, one router each, in this run",
    )
    overhead.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="router processes per setup (server.workers), one router each",
    )
    overhead.add_argument(
        "--max-wait-ms",
        type=float,
        nargs="+",
        default=[0.0],
        help="embedding.max_wait_ms values to measure (extra wait to grow a batch)",
    )
    overhead.add_argument(
        "--embed-threads",
        type=int,
        nargs="+",
        default=[1],
        help="embedding.threads values to measure (0: the runtime default, all cores)",
    )
    overhead.set_defaults(run=_cleanly(_overhead))
    scale = benches.add_parser(
        "cache", help="the example cache at scale: load rate, memory per example, KNN latency"
    )
    scale.add_argument("--examples", type=int, nargs="+", default=[100_000, 1_000_000])
    scale.add_argument("--queries", type=int, default=1000, help="KNN queries per size")
    scale.add_argument("--json", type=Path, default=None, help="also write the figures here")
    scale.set_defaults(run=_cleanly(_cache_scale))
    soak = benches.add_parser(
        "soak",
        help="many connections for a long time: memory, latency, 429s, leaks (stand-in models)",
    )
    soak.add_argument("--connections", type=int, default=1000)
    soak.add_argument("--minutes", type=float, default=10)
    soak.add_argument("--out", type=Path, default=None, help="write soak.json and soak.png here")
    soak.add_argument(
        "--embedding",
        choices=("onnx", "torch"),
        default="onnx",
        help="the router's embedding runtime (the image's is onnx)",
    )
    soak.set_defaults(run=_cleanly(_soak))
    calibrate = benches.add_parser(
        "calibrate",
        help="how well embedding agreement stands in for the reference answers, by threshold "
        "(routing.quality.agreement_threshold), from an earlier run's outcomes.jsonl",
    )
    calibrate.add_argument("outcomes", type=Path, help="a run's outcomes.jsonl")
    calibrate.add_argument("--out", type=Path, default=None, help="write calibration.md/.json")
    calibrate.add_argument(
        "--judge",
        default=None,
        help="also rate the pairwise judge: a --large model name, served here with every core",
    )
    calibrate.add_argument(
        "--judge-others",
        type=int,
        default=100,
        help="pairs that are no true loss to ask the judge about, besides every true loss",
    )
    calibrate.add_argument(
        "--verifier",
        action="store_true",
        help="rate every comparator side by side on the loss label (agreement, the large "
        "model's verifier, its own confidence, with --judge the judge): ROC-AUC with 95%% "
        "intervals and cost; serves the run's large model here",
    )
    calibrate.add_argument(
        "--threads", type=int, default=2, help="--verifier: the large model server's threads"
    )
    calibrate.add_argument(
        "--cascade",
        type=Path,
        default=None,
        metavar="DIR",
        help="replay verify mode from the scores a --verifier run wrote into DIR (no model): "
        "offload and accuracy against large-only for each pass rule; writes DIR/cascade.md",
    )
    calibrate.set_defaults(run=_cleanly(_calibrate))
    rerender = benches.add_parser(
        "report",
        help="remake results.json/.md/.png of an earlier run from its outcomes.jsonl",
    )
    rerender.add_argument("dir", type=Path, help="the run's --out folder")
    rerender.add_argument(
        "--add",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR",
        help="merge in the systems of these runs (the same requests and setup; written "
        "into dir, each merged run named in the header)",
    )
    rerender.set_defaults(run=_cleanly(_report))


def _check(args: argparse.Namespace, argv: list[str]) -> int:
    from iccache_dev.local.check import main as check

    return check()


def _overhead(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from iccache_dev.bench.overhead import bench as run_overhead

    return asyncio.run(
        run_overhead(
            args.requests,
            args.concurrency,
            args.seed_examples,
            args.json,
            tuple(args.embedding),
            tuple(args.workers),
            tuple(args.max_wait_ms),
            tuple(args.embed_threads),
        )
    )


def _cache_scale(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from iccache_dev.bench.cache_scale import bench as run_scale

    return asyncio.run(run_scale(args.examples, args.queries, args.json))


def _soak(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from iccache_dev.bench.soak import soak

    return asyncio.run(soak(args.connections, args.minutes, args.out, args.embedding))


def _calibrate(args: argparse.Namespace, argv: list[str]) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from iccache_dev.bench.calibrate import calibrate, judged_by
    from iccache_sidecar.embedding import load_encoder

    try:
        with contextlib.ExitStack() as stack:
            judge = None
            if args.judge:
                judge = stack.enter_context(judged_by(args.judge, args.judge_others))
            if args.cascade:
                from iccache_dev.bench.comparators import cascade

                text = cascade(args.outcomes, args.cascade / "scores.jsonl")
                (args.cascade / "cascade.md").write_text(text)
            elif args.verifier:
                from iccache_dev.bench.comparators import compare

                text = compare(args.outcomes, load_encoder(None, 0), args.out, args.threads, judge)
            else:
                text = calibrate(
                    args.outcomes, load_encoder(None, 0), args.out, judge, args.judge or ""
                )
        print(text, end="")
    except (OSError, ValueError, KeyError) as exc:
        print(f"iccache bench calibrate: {exc}", file=sys.stderr)
        return 2
    return 0


def _report(args: argparse.Namespace, argv: list[str]) -> int:
    from iccache_dev.bench.report import rerender as remake

    try:
        remake(args.dir, args.add)
    except ValueError as exc:
        print(f"iccache bench report: {exc}", file=sys.stderr)
        return 2
    print((args.dir / "results.md").read_text(), end="")
    return 0


def _bench(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio
    import os
    import shlex

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from iccache_dev.bench.demo import demo
    from iccache_dev.bench.run import BenchConfig, run_bench
    from iccache_dev.bench.stack import MODEL_CHOICES
    from iccache_dev.bench.systems import SYSTEMS
    from iccache_sidecar.embedding import load_encoder

    encoder = load_encoder(None, 0)
    try:
        if args.command == "demo":
            return asyncio.run(demo(args.requests, encoder))
        systems = tuple(args.systems or SYSTEMS)
        unknown = [s for s in systems if s not in SYSTEMS] + [
            m for m in (args.small, args.large) if m not in MODEL_CHOICES
        ]
        if unknown:
            print(
                f"iccache bench: unknown {unknown}; systems: {list(SYSTEMS)}, "
                f"models: {list(MODEL_CHOICES)}",
                file=sys.stderr,
            )
            return 2
        cfg = BenchConfig(
            workload=args.workload,
            requests=args.requests,
            rate_requests=args.rate_requests,
            rate=args.rate,
            concurrency=args.concurrency,
            modes=tuple(args.modes),
            near_share=args.near_share,
            style=args.style,
            systems=systems,
            small=args.small,
            large=args.large,
            feedback_rate=0.0 if args.feedback == "none" else args.feedback_rate,
            out=args.out,
            command="iccache " + shlex.join(argv),
        )
        asyncio.run(run_bench(cfg, encoder))
        print(f"results: {args.out}/results.md, results.json, results.png")
        return 0
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
