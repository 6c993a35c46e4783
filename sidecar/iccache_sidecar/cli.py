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
    args = parser.parse_args(argv)

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
        asyncio.run(run_server(settings))
        return 0

    if args.command == "check":
        from iccache_sidecar.local.check import main as check

        return check()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
