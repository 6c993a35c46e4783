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
    bench = commands.add_parser("bench", help="benchmarks")
    benches = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
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
    args = parser.parse_args(argv)

    if args.command == "bench" and args.bench == "overhead":
        import asyncio

        from iccache_sidecar.bench.overhead import bench as run_overhead

        return asyncio.run(
            run_overhead(args.requests, args.concurrency, args.seed_examples, args.json)
        )

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
