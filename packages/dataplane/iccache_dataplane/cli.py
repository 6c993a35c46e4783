"""The ``iccache`` command line of the data plane: ``serve`` and ``replay``.

The developer tools (``check``, ``demo``, ``bench``) add their verbs through the
entry-point group ``iccache.commands`` when ``iccache-dev`` is installed; the image has
only the two verbs below.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from iccache_dataplane import __version__

COMMANDS_GROUP = "iccache.commands"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iccache", description="In-context caching for LLM serving."
    )
    parser.add_argument("--version", action="version", version=f"iccache {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(commands)
    _add_replay(commands)
    for plugin in entry_points(group=COMMANDS_GROUP):
        plugin.load()(commands)
    args = parser.parse_args(argv)
    code: int = args.run(args, sys.argv[1:] if argv is None else argv)
    return code


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="run the router (HTTP and gRPC in one process)")
    serve.add_argument(
        "--config",
        type=Path,
        default=None,
        help="settings file (YAML or JSON); default: $ICCACHE_CONFIG. "
        "ICCACHE_<SECTION>__<FIELD> variables override it",
    )
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(run=_serve)


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "--summary-file",
        type=Path,
        default=None,
        help="also write the summary as JSON here (in a pod: /dev/termination-log)",
    )
    replay.add_argument("--log-level", default="INFO")
    replay.set_defaults(run=_replay)


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from pydantic import ValidationError

    from iccache_contract.settings import RouterSettings
    from iccache_dataplane.app import serve as run_server

    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
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


def _replay(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from pydantic import ValidationError

    from iccache_contract.settings import ReplaySettings, RouterSettings
    from iccache_dataplane.replay.main import exit_code, print_report, replay

    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
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
