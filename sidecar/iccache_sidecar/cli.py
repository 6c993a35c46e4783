"""The ``iccache`` command line of the data plane: ``serve``, ``replay``, ``cache``,
``keys`` and ``fetch-model``.

The developer tools (``check``, ``demo``, ``bench``) add their verbs through the
entry-point group ``iccache.commands`` when ``iccache-dev`` is installed; the image has
only the verbs below.
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

from iccache_sidecar import __version__

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
    _add_cache(commands)
    _add_keys(commands)
    _add_fetch_model(commands)
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


def _add_cache(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = commands.add_parser("cache", help="operate on the cached data")
    verbs = cache.add_subparsers(dest="cache_command", metavar="VERB", required=True)
    forget = verbs.add_parser(
        "forget",
        help="delete every example of a tenant, or what one request stored",
        description="Talks to Redis directly with the router's settings; writes an audit line.",
    )
    which = forget.add_mutually_exclusive_group(required=True)
    which.add_argument("--tenant", help="every example of this tenant")
    which.add_argument("--request-id", help="the example this request's answer became")
    forget.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    forget.add_argument("--config", type=Path, default=None, help="the router's settings file")
    forget.set_defaults(run=_forget)


def _add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="API keys for tenancy.mode api-keys")
    verbs = keys.add_subparsers(dest="keys_command", metavar="VERB", required=True)
    new = verbs.add_parser(
        "new",
        help="make a key: prints it once, and the entry for the keys file (its sha256 only)",
    )
    new.add_argument("--tenant", required=True)
    new.add_argument("--name", default="", help="who holds it (shown in logs)")
    new.set_defaults(run=_new_key)


def _add_fetch_model(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fetch = commands.add_parser(
        "fetch-model",
        help="download a model file and check its sha256 (a model pod's init container)",
        description="Keeps a file already at --dest whose sha256 matches. Exit status 0 when "
        "the file is in place, 1 when it could not be fetched or did not match.",
    )
    fetch.add_argument("--url", required=True, help="http(s) address of the file")
    fetch.add_argument("--sha256", required=True, help="expected digest, 64 hex digits")
    fetch.add_argument("--dest", required=True, type=Path, help="where the file goes")
    fetch.set_defaults(run=_fetch_model)


def _fetch_model(args: argparse.Namespace, argv: list[str]) -> int:
    from iccache_sidecar.fetch import run

    return run(args.url, args.sha256, args.dest)


def _forget(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio
    import getpass

    from pydantic import ValidationError

    from iccache_contract.settings import RouterSettings
    from iccache_sidecar.core.errors import IccacheError
    from iccache_sidecar.storage.connect import example_store
    from iccache_sidecar.storage.forget import forget
    from iccache_sidecar.storage.responses import ResponseStore

    logging.basicConfig(level="INFO", format=LOG_FORMAT)
    try:
        settings = RouterSettings.load(args.config)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"iccache cache forget: invalid settings: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        store = example_store(settings)
        who = f"cli:{getpass.getuser()}"
        responses = 0
        try:
            done = await forget(
                store,
                who=who,
                tenant=args.tenant,
                request_id=args.request_id,
                dry_run=args.dry_run,
            )
            if args.tenant is not None:
                kept = ResponseStore(
                    store.client, store.layout, settings.responses.store_ttl_seconds
                )
                responses = await kept.forget_tenant(args.tenant, who=who, dry_run=args.dry_run)
        finally:
            await store.client.aclose()
        verb = "would delete" if done.dry_run else "deleted"
        print(f"{verb} {done.examples} example(s) and {responses} stored response(s)")
        return 0

    try:
        return asyncio.run(run())
    except IccacheError as exc:
        print(f"iccache cache forget: {exc.message}", file=sys.stderr)
        return 1


def _new_key(args: argparse.Namespace, argv: list[str]) -> int:
    import secrets

    import yaml

    from iccache_contract.settings import ApiKey
    from iccache_sidecar.api.auth import key_digest

    key = "icc-" + secrets.token_urlsafe(32)
    entry = ApiKey(tenant=args.tenant, sha256=key_digest(key), name=args.name)
    print(f"key (shown once; give it to the client): {key}", file=sys.stderr)
    print(yaml.safe_dump({"keys": [entry.model_dump(exclude_none=True)]}, sort_keys=False), end="")
    return 0


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from pydantic import ValidationError

    from iccache_contract.settings import RouterSettings
    from iccache_sidecar import workers
    from iccache_sidecar.app import serve as run_server

    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    try:
        settings = RouterSettings.load(args.config)
    except (OSError, ValueError, ValidationError) as exc:
        print(f"iccache serve: invalid settings: {exc}", file=sys.stderr)
        return 2
    server = settings.server
    if server.workers > 1 and not workers.is_worker():
        argv = workers.worker_argv(str(args.config), args.log_level)
        return workers.supervise(
            argv, server.workers, server.drain_seconds + server.shutdown_grace_seconds + 5
        )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(run_server(settings))
    except ValueError as exc:  # a keys file or secret that does not hold up
        print(f"iccache serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _replay(args: argparse.Namespace, argv: list[str]) -> int:
    import asyncio

    from pydantic import ValidationError

    from iccache_contract.settings import ReplaySettings, RouterSettings
    from iccache_sidecar.replay.main import exit_code, print_report, replay

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
