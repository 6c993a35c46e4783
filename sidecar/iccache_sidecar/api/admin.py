"""The admin API: forgetting cached data. It needs the admin key (``Authorization:
Bearer <key>``, from the variable ``tenancy.admin_key_env``); without one configured the
routes answer 404."""

from __future__ import annotations

import hmac
import logging
import math
import os
import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from iccache_contract.settings import TenancySettings
from iccache_sidecar.api.http_errors import ERROR_RESPONSES
from iccache_sidecar.api.http_state import HttpState, State
from iccache_sidecar.api.tenancy import check_tenant
from iccache_sidecar.core.errors import (
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    UnknownRequest,
)
from iccache_sidecar.storage.forget import forget

router = APIRouter()
audit = logging.getLogger("iccache.audit")


class ForgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str | None = Field(default=None, description="Every example of this tenant")
    request_id: str | None = Field(default=None, description="What this request stored")
    dry_run: bool = Field(default=False, description="Only count")

    @model_validator(mode="after")
    def _exactly_one(self) -> ForgetIn:
        if (self.tenant is None) == (self.request_id is None):
            raise ValueError("give exactly one of tenant and request_id")
        if self.tenant is not None:
            check_tenant(self.tenant)
        return self


class ForgetOut(BaseModel):
    examples: int = Field(description="Examples deleted (with dry_run: that would be)")
    responses: int = Field(
        default=0, description="A tenant's stored Responses API responses deleted (or counted)"
    )
    dry_run: bool


# As long as an API key must be: a short admin key is guessed, and can delete any data.
MIN_ADMIN_KEY = 16


def admin_key(tenancy: TenancySettings) -> str:
    """The configured admin key, or empty (the admin API is off). A key shorter than
    ``MIN_ADMIN_KEY`` characters stops the router at start."""
    key = os.environ.get(tenancy.admin_key_env, "") if tenancy.admin_key_env else ""
    if key and len(key) < MIN_ADMIN_KEY:
        raise ValueError(
            f"the admin key in ${tenancy.admin_key_env} has {len(key)} characters: it needs "
            f"at least {MIN_ADMIN_KEY} (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(24))')"
        )
    return key


def check_admin(state: HttpState, request: Request) -> str:
    """Who is calling, for the audit log; refuses anyone without the admin key, and an
    address after too many wrong keys (429 until its lockout ends)."""
    if not state.admin_key:
        raise UnknownRequest("the admin API is not enabled (set tenancy.admin_key_env)")
    client = request.client.host if request.client else "unknown"
    now = time.monotonic()
    wait = state.admin_failures.retry_after(client, now)
    if wait is not None:
        raise RateLimited(
            f"too many wrong admin keys from {client}; try again in {math.ceil(wait)} s", wait
        )
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthenticated("missing admin key: send 'Authorization: Bearer <admin key>'")
    if not hmac.compare_digest(key.strip().encode(), state.admin_key.encode()):
        state.admin_failures.failed(client, now)
        audit.warning("who=%s action=admin refused=wrong-key", client)
        raise PermissionDenied("wrong admin key")
    state.admin_failures.succeeded(client)
    return f"admin@{client}"


@router.post("/admin/v1/forget", responses=ERROR_RESPONSES)
async def forget_route(body: ForgetIn, request: Request, state: State) -> ForgetOut:
    who = check_admin(state, request)
    if state.store is None:
        raise UnknownRequest("this router has no cache")
    done = await forget(
        state.store, who=who, tenant=body.tenant, request_id=body.request_id, dry_run=body.dry_run
    )
    responses = 0
    if body.tenant is not None and state.responses is not None:
        responses = await state.responses.forget_tenant(body.tenant, who=who, dry_run=body.dry_run)
    return ForgetOut(examples=done.examples, responses=responses, dry_run=done.dry_run)
