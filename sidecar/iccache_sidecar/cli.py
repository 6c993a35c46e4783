"""The ``iccache`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iccache_sidecar import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iccache",
        description="In-context caching for LLM serving: tools for the data plane.",
    )
    parser.add_argument("--version", action="version", version=f"iccache {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("check", help="verify the local binaries and models that setup installed")
    serve = commands.add_parser("serve", help="run the router (HTTP and gRPC in one process)")
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="settings file (YAML or JSON); default: $ICCACHE_CONFIG. "
        "ICCACHE_<SECTION>__<FIELD> variables override it",
    )
    serve.add_argument("--log-level", default="INFO")
    replay = commands.add_parser(
        "replay",
        help="improve the cache off-peak: distil and expand high-gain examples, evict",
        description="Runs only while the routers report load at most --low-load. Budgets "
        "are per tenant. Exit status: 0 when it completed or stopped for load, deadline "
        "or budget; 1 when it failed; 143 when interrupted by a signal.",
    )
    replay.add_argument("--config", type=Path, default=None, help="the router's settings file")
    replay.add_argument("--budget-requests", type=int, help="model requests per tenant")
    replay.add_argument("--budget-tokens", type=int, help="model tokens per tenant")
    replay.add_argument("--low-load", type=float, help="highest load (0..1) to run at")
    replay.add_argument("--deadline-seconds", type=int, help="wall time for the whole run")
    replay.add_argument("--top", type=int, dest="top_examples", help="examples per tenant")
    replay.add_argument("--samples", type=int, help="large-model answers per distilled example")
    replay.add_argument("--tenant", default=None, help="only this tenant (default: all)")
    replay.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    replay.add_argument(
        "--summary-file", type=Path, default=None,
        help="also write the summary as JSON here (in a pod: /dev/termination-log)",
    )  # fmt: skip
    replay.add_argument("--log-level", default="INFO")
    demo = commands.add_parser(
        "demo", help="the main job: the whole stack locally, real questions, one table"
    )
    demo.add_argument("--requests", type=int, default=60, help="questions to send")
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
    bench.add_argument("--modes", nargs="+", default=["saturation", "rate"],
                       choices=["saturation", "rate"])  # fmt: skip
    bench.add_argument("--style", default="short", choices=["short", "long"],
                       help="short answers (accuracy) or explained ones (~128 tokens)")  # fmt: skip
    bench.add_argument("--systems", nargs="+", default=None, help="default: all")
    bench.add_argument("--small", default="smollm2-135m")
    bench.add_argument("--large", default="qwen2.5-coder-1.5b")
    bench.add_argument("--near-share", type=float, default=0.67,
                       help="share of requests with an earlier similar question")  # fmt: skip
    bench.add_argument("--out", type=Path, default=Path("bench-results"))
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
    rerender = benches.add_parser(
        "report",
        help="remake results.json/.md/.png of an earlier run from its outcomes.jsonl",
    )
    rerender.add_argument("dir", type=Path, help="the run's --out folder")
    args = parser.parse_args(argv)

    if args.command in ("bench", "demo") and getattr(args, "bench", None) is None:
        return _bench(args, sys.argv[1:] if argv is None else argv)

    if args.command == "bench" and args.bench == "overhead":
        import asyncio

        from iccache_sidecar.bench.overhead import bench as run_overhead

        return asyncio.run(
            run_overhead(args.requests, args.concurrency, args.seed_examples, args.json)
        )

    if args.command == "bench" and args.bench == "report":
        from iccache_sidecar.bench.report import rerender as remake

        try:
            remake(args.dir)
        except ValueError as exc:
            print(f"iccache bench report: {exc}", file=sys.stderr)
            return 2
        print((args.dir / "results.md").read_text(), end="")
        return 0

    if args.command == "serve":
        import asyncio
        import logging

        from pydantic import ValidationError

        from iccache_sidecar.app import serve as run_server
        from iccache_sidecar.settings import RouterSettings

        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            settings = RouterSettings.load(args.config)
        except (OSError, ValueError, ValidationError) as exc:
            print(f"iccache serve: invalid settings: {exc}", file=sys.stderr)
            return 2
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvicorn[standard] brings it
            asyncio.run(run_server(settings))
        else:
            uvloop.run(run_server(settings))
        return 0

    if args.command == "replay":
        return _replay(args)

    if args.command == "check":
        from iccache_sidecar.local.check import main as check

        return check()
    parser.error(f"unknown command {args.command!r}")
    return 2


def _bench(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio
    import os
    import shlex

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from iccache_sidecar.bench.demo import demo
    from iccache_sidecar.bench.run import BenchConfig, run_bench
    from iccache_sidecar.bench.stack import MODEL_CHOICES
    from iccache_sidecar.bench.systems import SYSTEMS
    from iccache_sidecar.embedding import load_sentence_transformer

    encoder = load_sentence_transformer(None, 0)
    try:
        if args.command == "demo":
            return asyncio.run(demo(args.requests, encoder))
        systems = tuple(args.systems or SYSTEMS)
        unknown = [s for s in systems if s not in SYSTEMS] + [
            m for m in (args.small, args.large) if m not in MODEL_CHOICES
        ]
        if unknown:
            print(f"iccache bench: unknown {unknown}; systems: {list(SYSTEMS)}, "
                  f"models: {list(MODEL_CHOICES)}", file=sys.stderr)  # fmt: skip
            return 2
        cfg = BenchConfig(
            workload=args.workload, requests=args.requests, rate_requests=args.rate_requests,
            rate=args.rate, concurrency=args.concurrency, modes=tuple(args.modes),
            near_share=args.near_share, style=args.style, systems=systems, small=args.small,
            large=args.large, out=args.out,
            command="iccache " + shlex.join(argv),
        )  # fmt: skip
        asyncio.run(run_bench(cfg, encoder))
        print(f"results: {args.out}/results.md, results.json, results.png")
        return 0
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


def _replay(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from pydantic import ValidationError

    from iccache_sidecar.replay.main import exit_code, print_report, replay
    from iccache_sidecar.settings import ReplaySettings, RouterSettings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    overrides = {
        name: getattr(args, name)
        for name in ReplaySettings.model_fields
        if getattr(args, name, None) is not None
    }
    try:
        settings = RouterSettings.load(args.config)
        replay_settings = ReplaySettings.model_validate(settings.replay.model_dump() | overrides)
        settings = settings.model_copy(update={"replay": replay_settings})
    except (OSError, ValueError, ValidationError) as exc:
        print(f"iccache replay: invalid settings: {exc}", file=sys.stderr)
        return 2
    summary = asyncio.run(
        replay(settings, tenant=args.tenant, dry_run=args.dry_run, summary_file=args.summary_file)
    )
    print_report(summary)
    return exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
