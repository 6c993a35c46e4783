"""Loaded by kopf next to ``iccache_operator.handlers`` in the operator's fault tests:
once the file named by ``ICCACHE_TEST_HOLD_FILE`` appears, the server-side apply after
the next ``ICCACHE_TEST_HOLD_SKIP`` ones (default 0) waits ``HOLD_SECONDS`` (and the
file is removed), so that a deletion or a kill arrives while a reconcile is in progress.
A slow API server cannot be produced on demand here; this is the one injected fault in
the operator tests (the kill and the API server restart are real)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from iccache_operator.kube import Kube

HOLD_SECONDS = 5.0
HOLDING = "holding a reconcile"


def _take(marker: Path) -> bool:
    """True once per creation of the marker file."""
    try:
        marker.unlink()
    except FileNotFoundError:
        return False
    return True


def install(marker: Path, skip: int = 0) -> None:
    apply = Kube.apply
    left: int | None = None  # applies still to let through once the marker was seen

    async def held_apply(self: Kube, manifest: dict[str, Any]) -> None:
        nonlocal left
        if left is None and _take(marker):
            left = skip
        if left == 0:
            left = None
            what = f"{manifest['kind']} {manifest['metadata']['name']}"
            logging.getLogger(__name__).warning(
                "%s for %.0f s before applying %s", HOLDING, HOLD_SECONDS, what
            )
            await asyncio.sleep(HOLD_SECONDS)
        elif left is not None:
            left -= 1
        await apply(self, manifest)

    Kube.apply = held_apply  # type: ignore[method-assign]


if "ICCACHE_TEST_HOLD_FILE" in os.environ:  # in the operator's process only
    install(
        Path(os.environ["ICCACHE_TEST_HOLD_FILE"]),
        int(os.environ.get("ICCACHE_TEST_HOLD_SKIP", "0")),
    )
