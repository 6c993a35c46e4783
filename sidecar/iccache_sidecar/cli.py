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

    if args.command == "check":
        from iccache_sidecar.local.check import main as check

        return check()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
