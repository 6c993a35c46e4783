"""What a tenant name may look like; examples never cross tenants."""

from __future__ import annotations

import re

from iccache_contract import names
from iccache_sidecar.core.errors import InvalidRequest

_TENANT = re.compile(names.TENANT_PATTERN)


def check_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise InvalidRequest(
            f"tenant {tenant[:80]!r} is invalid: use 1-64 letters, digits, '_', '.' or '-'",
            param="tenant",
        )
    return tenant
