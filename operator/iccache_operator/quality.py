"""Reading the routers' quality budgets for ``status.quality``: ``GET /quality`` on the
address of every running router pod. A router that does not answer within the timeout,
or answers something else, is left out (``routersReporting`` shows it)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from pydantic import ValidationError

from iccache_contract import names
from iccache_contract.quality import QualityReport

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2.0


def running_addresses(pods: list[dict[str, Any]]) -> list[str]:
    """The IPs of the router pods that run (and are not being deleted)."""
    return [
        str(p["status"]["podIP"])
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and p["status"].get("podIP")
        and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]


async def read_reports(addresses: list[str], port: int) -> list[QualityReport]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        found = await asyncio.gather(*(_read(http, a, port) for a in addresses))
    return [r for r in found if r is not None]


async def _read(http: aiohttp.ClientSession, address: str, port: int) -> QualityReport | None:
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:{port}{names.QUALITY_PATH}"
    try:
        async with http.get(url) as r:
            if r.status != 200:
                log.info("router %s answered %s for its quality budget", address, r.status)
                return None
            return QualityReport.model_validate(await r.json())
    except (aiohttp.ClientError, TimeoutError, ValidationError, ValueError) as exc:
        log.info("router %s: no quality budget read: %s", address, exc)
        return None
