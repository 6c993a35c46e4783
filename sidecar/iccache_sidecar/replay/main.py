"""The composition root of ``iccache replay``: builds the job's collaborators, runs it,
turns SIGTERM/SIGINT into a clean stop, and writes the summary where the operator reads
it (a file, normally the container's termination message, and Redis)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from iccache_contract.settings import BackendSettings, RouterSettings
from iccache_sidecar.backends.client import Backend
from iccache_sidecar.core.domain import Route
from iccache_sidecar.core.errors import DependencyDown
from iccache_sidecar.embedding import BatchingEmbedder, Encoder, load_encoder
from iccache_sidecar.replay.cache import ReplayCache
from iccache_sidecar.replay.job import ReplayJob
from iccache_sidecar.replay.pickers import AgreementPicker, AnswerPicker, JudgePicker
from iccache_sidecar.replay.progress import Progress
from iccache_sidecar.replay.summary import ReplaySummary
from iccache_sidecar.storage.connect import example_store, layout_of
from iccache_sidecar.storage.loadboard import LoadBoard

log = logging.getLogger("iccache.replay")

EXIT_CODES = {"failed": 1, "interrupted": 143}


async def replay(
    settings: RouterSettings,
    *,
    tenant: str | None = None,
    dry_run: bool = False,
    summary_file: Path | None = None,
    encoder: Encoder | None = None,
) -> ReplaySummary:
    store = example_store(settings)
    client = store.client
    # No retries: every request the job sends is one it counted against the budget.
    large = Backend(Route.LARGE, settings.large.model_copy(update={"max_retries": 0}))
    j = settings.judge
    judge = (
        Backend(
            Route.LARGE,
            BackendSettings(
                base_url=j.base_url, model=j.model, api_key_env=j.api_key_env, max_retries=0
            ),
        )
        if j.base_url
        else None
    )
    if encoder is None:
        encoder = await asyncio.to_thread(
            load_encoder, settings.embedding.model_path, settings.embedding.threads
        )
    embedder = BatchingEmbedder(encoder, settings.embedding.batch_size, 0.0)
    await embedder.start()
    picker: AnswerPicker = (
        JudgePicker() if judge else AgreementPicker(embedder, settings.replay.improve_margin)
    )
    job = ReplayJob(
        settings,
        cache=ReplayCache(store),
        board=LoadBoard(client, layout_of(settings)),
        large=large,
        judge=judge,
        embedder=embedder,
        picker=picker,
        progress=Progress(),
    )
    task = asyncio.create_task(job.run(tenant, dry_run))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        summary = await task
    except asyncio.CancelledError:
        summary = job.summary
        summary.status, summary.detail = "interrupted", "stopped by a signal"
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await embedder.stop()
        for backend in (large, judge):
            if backend is not None:
                await backend.close()
    if summary_file is not None:
        try:
            await asyncio.to_thread(summary_file.write_text, summary.compact())
        except OSError as exc:
            log.warning("could not write the summary to %s: %s", summary_file, exc)
    if not dry_run:
        try:
            await job.cache.write_summary(summary.to_json(plan=False))
        except DependencyDown as exc:
            log.warning("could not keep the summary in redis: %s", exc)
    await client.aclose()
    return summary


def print_report(summary: ReplaySummary) -> None:
    if summary.status == "dry-run":
        for step in summary.planned:
            print("would", json.dumps(step))
    print(summary.table())
    sys.stdout.flush()


def exit_code(summary: ReplaySummary) -> int:
    return EXIT_CODES.get(summary.status, 0)
