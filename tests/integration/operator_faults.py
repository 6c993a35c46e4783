"""Loaded by kopf next to ``iccache_operator.handlers`` in one operator test: once the
file named by ``ICCACHE_TEST_HOLD_FILE`` appears, the next server-side apply waits
``HOLD_SECONDS`` (and removes the file), so that a deletion arrives while a reconcile is
in progress. A slow API server cannot be produced on demand here; this is the one
injected fault in the operator tests."""

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


def install(marker: Path) -> None:
    apply = Kube.apply

    async def held_apply(self: Kube, manifest: dict[str, Any]) -> None:
        if _take(marker):
            logging.getLogger(__name__).warning("%s for %.0f s", HOLDING, HOLD_SECONDS)
            await asyncio.sleep(HOLD_SECONDS)
        await apply(self, manifest)

    Kube.apply = held_apply  # type: ignore[method-assign]


if "ICCACHE_TEST_HOLD_FILE" in os.environ:  # in the operator's process only
    install(Path(os.environ["ICCACHE_TEST_HOLD_FILE"]))
