"""Forgetting cached data on request (a privacy request, a mistake): every example of a
tenant, or what one request stored. Each action writes an audit line (logger
``iccache.audit``): who, what, how many examples."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from iccache_sidecar.storage.examples import ExampleStore
from iccache_sidecar.storage.redis_io import redis_call

audit = logging.getLogger("iccache.audit")


@dataclass(frozen=True)
class Forgotten:
    examples: int
    dry_run: bool


async def forget(
    store: ExampleStore,
    *,
    who: str,
    tenant: str | None = None,
    request_id: str | None = None,
    dry_run: bool = False,
) -> Forgotten:
    """Delete (or with ``dry_run`` only count) a tenant's examples or a request's, with
    the replay job's companions made from them. Exactly one of ``tenant`` and
    ``request_id``. A tombstone goes first, so that an admission (or a replay step)
    racing this forget deletes what it writes (see ``ExampleStore.forgotten``)."""
    if (tenant is None) == (request_id is None):
        raise ValueError("give exactly one of tenant and request_id")
    if not dry_run:
        await store.mark_forgotten(tenant, request_id)
    if tenant is not None:
        ids = await store.ids_of(tenant)
        what = f"tenant={tenant}"
    else:
        assert request_id is not None
        found = await store.stored_by(request_id)
        ids = [found, *await store.companions_of(found)] if found else []
        what = f"request_id={request_id}"
    deleted = len(ids)
    if not dry_run:
        deleted = 0
        for example_id in ids:
            deleted += await store.delete(example_id)
        if request_id is not None:
            keys = [store.layout.decision_key(request_id), store.layout.verdicts_key(request_id)]
            await redis_call(lambda: store.client.delete(*keys))
    audit.info(
        "who=%s action=forget %s examples=%d dry_run=%s", who, what, deleted, str(dry_run).lower()
    )
    return Forgotten(deleted, dry_run)
