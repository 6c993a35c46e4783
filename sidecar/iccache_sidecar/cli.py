"""The ``iccache`` command line."""

from __future__ import annotations

import argparse
import sys

from iccache_sidecar import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iccache",
        description="In-context caching for LLM serving: tools for the data plane.",
    )
    parser.add_argument("--version", action="version", version=f"iccache {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("check", help="verify the local binaries and models that setup installed")
    args = parser.parse_args(argv)

    if args.command == "check":
        from iccache_sidecar.local.check import main as check

        return check()
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
