"""What a tenant name may look like; examples never cross tenants."""

from __future__ import annotations

import re

from iccache_dataplane.core.errors import InvalidRequest

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise InvalidRequest(
            f"tenant {tenant[:80]!r} is invalid: use 1-64 letters, digits, '_', '.' or '-'",
            param="tenant",
        )
    return tenant
