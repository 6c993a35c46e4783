"""Which tenant a request belongs to; examples never cross tenants."""

from __future__ import annotations

import re
from collections.abc import Mapping

from iccache_contract.settings import TenancySettings
from iccache_dataplane.core.errors import InvalidRequest

TENANT_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_tenant(tenant: str) -> str:
    if not TENANT_PATTERN.match(tenant):
        raise InvalidRequest(
            f"tenant {tenant[:80]!r} is invalid: use 1-64 letters, digits, '_', '.' or '-'",
            param="tenant",
        )
    return tenant


def resolve_tenant(settings: TenancySettings, headers: Mapping[str, str], user: str | None) -> str:
    """The header wins, then the request's ``user`` field (if enabled), then the default."""
    value = headers.get(settings.header)
    if value is None and settings.use_user_field and user:
        value = user
    return check_tenant(value if value is not None else settings.default_tenant)
