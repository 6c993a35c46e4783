"""API keys for tests of authenticated tenants: a keys file as a Secret would hold it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iccache_sidecar.api.auth import key_digest

KEYS = {
    "acme": "icc-test-key-for-acme-0000000001",
    "globex": "icc-test-key-for-globex-00000002",
    "initech": "icc-test-key-for-initech-0000003",
}


def write_keys(path: Path, revoked: set[str] = frozenset(), **per_tenant: dict[str, Any]) -> Path:
    """The keys file for ``KEYS`` (by sha256, as `iccache keys new` prints them)."""
    entries = [
        {
            "tenant": tenant,
            "sha256": key_digest(key),
            "name": f"{tenant}-app",
            "revoked": tenant in revoked,
            **per_tenant.get(tenant, {}),
        }
        for tenant, key in KEYS.items()
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"keys": entries}))
    tmp.replace(path)  # as the kubelet swaps a Secret's files: whole, never half-written
    return path


def api_keys(path: Path) -> dict[str, Any]:
    return {"mode": "api-keys", "keys_file": str(path)}
