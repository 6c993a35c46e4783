"""Who is calling, and so which tenant a request belongs to. Nothing a caller merely
claims names a tenant: in ``single`` mode there is one tenant, in ``api-keys`` mode the
key does, in ``gateway`` mode the tenant header counts only next to the gateway's secret.
Keys are kept as sha256 digests and never logged."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from iccache_contract.settings import ApiKey, KeysFile, TenancySettings, TenantLimits
from iccache_sidecar.api.tenancy import check_tenant
from iccache_sidecar.core.errors import InvalidRequest, PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    tenant: str
    limits: TenantLimits
    who: str = "anonymous"  # for logs: a key's name, never the key
    models: frozenset[str] | None = None  # the models it may ask for (None: any)
    user: str | None = None  # the end user the credentials name (None: none)


class KeyRing:
    """The keys file, by digest; re-read when the file changes (a Secret's update)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_digest: dict[str, ApiKey] = {}
        self._seen: tuple[int, int, int] | None = None
        self._checked = 0.0
        self.reload(strict=True)

    def reload(self, strict: bool = False) -> None:
        """Read the file if it changed; a broken new version keeps the old keys."""
        try:
            st = self.path.stat()
            seen = (st.st_mtime_ns, st.st_ino, st.st_size)
            if seen == self._seen:
                return
            parsed = KeysFile.model_validate(yaml.safe_load(self.path.read_text()) or {})
        except (OSError, ValueError, ValidationError, yaml.YAMLError) as exc:
            why = _without_values(exc)
            if strict:
                raise ValueError(f"keys file {self.path}: {why}") from None
            log.error("keys file %s unreadable, keeping the previous keys: %s", self.path, why)
            return
        self._by_digest = {k.sha256 or key_digest(k.key or ""): k for k in parsed.keys}
        self._seen = seen
        active = sum(1 for k in parsed.keys if not k.revoked)
        log.info("loaded %d API keys (%d active) from %s", len(parsed.keys), active, self.path)

    def find(self, key: str) -> ApiKey | None:
        now = time.monotonic()
        if now - self._checked >= RELOAD_CHECK_SECONDS:
            self._checked = now
            self.reload()
        return self._by_digest.get(key_digest(key))


def _without_values(exc: Exception) -> str:
    """What is wrong with a keys file, never what it holds: a validation error names the
    field and the rule (its usual text quotes the input, which may be a key), a YAML
    error its position."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not YAML ({exc.problem} at line {mark.line + 1}, column {mark.column + 1})"
    if isinstance(exc, yaml.YAMLError):
        return "not YAML"
    return type(exc).__name__ if not isinstance(exc, OSError) else str(exc)


class Authenticator:
    def __init__(self, settings: TenancySettings, keys: KeyRing | None = None) -> None:
        self.settings = settings
        self.keys = keys
        env = settings.gateway_secret_env
        self._gateway_secret = os.environ.get(env, "") if env else ""
        if settings.mode == "gateway" and not self._gateway_secret:
            raise ValueError(f"tenancy.mode gateway: ${env} is empty")

    @classmethod
    def from_settings(cls, settings: TenancySettings) -> Authenticator:
        keys = KeyRing(Path(settings.keys_file)) if settings.keys_file else None
        return cls(settings, keys)

    @property
    def guarded(self) -> tuple[str, ...]:
        """The headers that say who is calling (lower-case names)."""
        s = self.settings
        return (
            "authorization",
            s.gateway_secret_header.lower(),
            s.header.lower(),
            s.user_header.lower(),
        )

    def caller(self, headers: Mapping[str, str], claimed_tenant: str = "") -> Caller:
        """The caller of a request with these headers (HTTP headers or gRPC metadata,
        looked up by lower-case name). A header that says who is calling must come once:
        HTTP servers keep the first of two, gRPC the last, so a second one is refused
        rather than read either way. ``claimed_tenant`` (a gRPC body's ``tenant``) is
        never believed: it must be empty or the tenant the credentials name."""
        getlist = getattr(headers, "getlist", None)  # HTTP and gRPC multi-dicts
        if getlist is not None:
            for name in self.guarded:
                if (times := len(getlist(name))) > 1:
                    raise InvalidRequest(f"the {name} header came {times} times: send it once")
        found = self._caller(headers)
        if claimed_tenant and claimed_tenant != found.tenant:
            raise PermissionDenied(
                f"tenant {claimed_tenant!r} in the request is not the caller's: the tenant "
                "is named by the API key or the gateway's header, not by the request"
            )
        return found

    def _caller(self, headers: Mapping[str, str]) -> Caller:
        s = self.settings
        if s.mode == "api-keys":
            return self._by_key(headers.get("authorization"))
        if s.mode == "gateway":
            presented = headers.get(s.gateway_secret_header.lower(), "")
            if not hmac.compare_digest(presented.encode(), self._gateway_secret.encode()):
                raise Unauthenticated(
                    "this router accepts requests only from its gateway: "
                    f"{'missing' if not presented else 'wrong'} {s.gateway_secret_header}"
                )
            tenant = check_tenant(headers.get(s.header.lower()) or s.default_tenant)
            user = headers.get(s.user_header.lower()) or None
            return Caller(tenant, s.limits_of(tenant), who="gateway", user=user)
        return Caller(s.default_tenant, s.limits_of(s.default_tenant))

    def _by_key(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <key>'")
        assert self.keys is not None  # api-keys mode always has a key ring
        entry = self.keys.find(key.strip())
        if entry is None:
            raise Unauthenticated("unknown API key")
        if entry.revoked:
            raise PermissionDenied(f"API key {entry.name or '(unnamed)'} was revoked")
        own = TenantLimits(
            requests_per_minute=entry.requests_per_minute,
            tokens_per_minute=entry.tokens_per_minute,
        )
        limits = own.over(self.settings.limits_of(entry.tenant))
        models = frozenset(entry.models) if entry.models is not None else None
        # Each key is an end user of its own (cache.share: user keeps their answers apart).
        user = f"key:{key_digest(key.strip())[:16]}"
        return Caller(entry.tenant, limits, who=entry.name or "api-key", models=models, user=user)
