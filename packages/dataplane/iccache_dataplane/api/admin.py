"""The admin API: forgetting cached data. It needs the admin key (``Authorization:
Bearer <key>``, from the variable ``tenancy.admin_key_env``); without one configured the
routes answer 404."""

from __future__ import annotations

import hmac
import os

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from iccache_contract.settings import TenancySettings
from iccache_dataplane.api.tenancy import check_tenant
from iccache_dataplane.core.errors import PermissionDenied, Unauthenticated, UnknownRequest
from iccache_dataplane.storage.examples import ExampleStore
from iccache_dataplane.storage.forget import forget


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
    dry_run: bool


def add_admin_routes(app: FastAPI, tenancy: TenancySettings, store: ExampleStore | None) -> None:
    admin_key = os.environ.get(tenancy.admin_key_env, "") if tenancy.admin_key_env else ""

    def check_admin(request: Request) -> str:
        if not admin_key:
            raise UnknownRequest("the admin API is not enabled (set tenancy.admin_key_env)")
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise Unauthenticated("missing admin key: send 'Authorization: Bearer <admin key>'")
        if not hmac.compare_digest(key.strip().encode(), admin_key.encode()):
            raise PermissionDenied("wrong admin key")
        client = request.client.host if request.client else "unknown"
        return f"admin@{client}"

    @app.post("/admin/v1/forget")
    async def forget_route(body: ForgetIn, request: Request) -> ForgetOut:
        who = check_admin(request)
        if store is None:
            raise UnknownRequest("this router has no cache")
        done = await forget(
            store, who=who, tenant=body.tenant, request_id=body.request_id, dry_run=body.dry_run
        )
        return ForgetOut(examples=done.examples, dry_run=done.dry_run)
