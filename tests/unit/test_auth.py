"""Who a caller is, from headers alone (no services)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from starlette.datastructures import Headers

from iccache_contract.settings import RouterSettings, TenancySettings, TenantLimits
from iccache_sidecar.api.admin import admin_key
from iccache_sidecar.api.auth import Authenticator, Caller, KeyRing, key_digest
from iccache_sidecar.api.intake import build_request, chat_messages
from iccache_sidecar.api.openai_schema import ChatCompletionRequest
from iccache_sidecar.core.domain import Route, RouterRequest
from iccache_sidecar.core.errors import InvalidRequest, PermissionDenied, Unauthenticated

KEY = "icc-unit-test-key-000000000000001"


def keys_file(path: Path, **entry: object) -> Path:
    row = {"tenant": "acme", "sha256": key_digest(KEY), "name": "app", **entry}
    path.write_text(yaml.safe_dump({"keys": [row]}))
    return path


def test_single_mode_ignores_every_claim() -> None:
    auth = Authenticator(TenancySettings(default_tenant="only"))
    caller = auth.caller({"x-iccache-tenant": "acme", "authorization": f"Bearer {KEY}"})
    assert caller.tenant == "only"


def test_api_keys_name_the_tenant(tmp_path: Path) -> None:
    path = keys_file(tmp_path / "keys.yaml", requests_per_minute=5)
    auth = Authenticator.from_settings(TenancySettings(mode="api-keys", keys_file=str(path)))
    caller = auth.caller({"authorization": f"Bearer {KEY}", "x-iccache-tenant": "globex"})
    assert (caller.tenant, caller.who, caller.limits.requests_per_minute) == ("acme", "app", 5)
    with pytest.raises(Unauthenticated, match="missing API key"):
        auth.caller({})
    with pytest.raises(Unauthenticated, match="unknown API key"):
        auth.caller({"authorization": "Bearer icc-some-other-key"})


def test_a_revoked_key_is_refused(tmp_path: Path) -> None:
    path = keys_file(tmp_path / "keys.yaml", revoked=True)
    auth = Authenticator.from_settings(TenancySettings(mode="api-keys", keys_file=str(path)))
    with pytest.raises(PermissionDenied, match="app was revoked"):
        auth.caller({"authorization": f"Bearer {KEY}"})


def test_a_broken_keys_file_fails_at_start_and_is_ignored_later(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("keys: [{tenant: acme}]")
    with pytest.raises(ValueError, match="exactly one of sha256 and key"):
        KeyRing(bad)
    ring = KeyRing(keys_file(tmp_path / "keys.yaml"))
    (tmp_path / "keys.yaml").write_text("keys: [")
    os.utime(tmp_path / "keys.yaml", ns=(1, 1))
    ring.reload()
    assert ring.find(KEY) is not None  # the keys loaded before stay


def test_gateway_mode_needs_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW", "s3cret")
    auth = Authenticator(TenancySettings(mode="gateway", gateway_secret_env="GW"))
    assert (
        auth.caller({"x-iccache-tenant": "acme", "x-iccache-gateway-secret": "s3cret"}).tenant
        == "acme"
    )
    with pytest.raises(Unauthenticated, match="missing x-iccache-gateway-secret"):
        auth.caller({"x-iccache-tenant": "acme"})
    with pytest.raises(InvalidRequest, match="tenant"):
        auth.caller({"x-iccache-tenant": "no spaces", "x-iccache-gateway-secret": "s3cret"})


def test_modes_need_their_secrets() -> None:
    with pytest.raises(ValueError, match="keys_file"):
        TenancySettings(mode="api-keys")
    with pytest.raises(ValueError, match="gateway_secret_env"):
        TenancySettings(mode="gateway")


def test_a_header_that_says_who_calls_must_come_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP servers keep the first of two equal headers and gRPC the last: a gateway that
    appends its own tenant header after a client's would be read differently by each."""
    monkeypatch.setenv("GW", "s3cret")
    auth = Authenticator(TenancySettings(mode="gateway", gateway_secret_env="GW"))
    twice = Headers(
        raw=[
            (b"x-iccache-tenant", b"victim"),
            (b"x-iccache-gateway-secret", b"s3cret"),
            (b"x-iccache-tenant", b"acme"),
        ]
    )
    with pytest.raises(InvalidRequest, match="x-iccache-tenant header came 2 times"):
        auth.caller(twice)
    once = Headers(raw=[(b"x-iccache-tenant", b"acme"), (b"x-iccache-gateway-secret", b"s3cret")])
    assert auth.caller(once).tenant == "acme"


def test_a_tenant_named_in_the_body_is_never_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW", "s3cret")
    gateway = Authenticator(TenancySettings(mode="gateway", gateway_secret_env="GW"))
    vouched = {"x-iccache-tenant": "acme", "x-iccache-gateway-secret": "s3cret"}
    assert gateway.caller(vouched, claimed_tenant="acme").tenant == "acme"
    with pytest.raises(PermissionDenied, match="'victim' in the request is not the caller's"):
        gateway.caller(vouched, claimed_tenant="victim")
    keyed = Authenticator(
        TenancySettings(mode="api-keys", keys_file=str(keys_file(tmp_path / "k.yaml"))),
        KeyRing(tmp_path / "k.yaml"),
    )
    with pytest.raises(PermissionDenied):
        keyed.caller({"authorization": f"Bearer {KEY}"}, claimed_tenant="victim")
    single = Authenticator(TenancySettings(default_tenant="only"))
    with pytest.raises(PermissionDenied):
        single.caller({}, claimed_tenant="victim")
    assert single.caller({}, claimed_tenant="only").tenant == "only"


def test_a_key_limited_to_some_models_cannot_force_another() -> None:
    caller = Caller("acme", TenantLimits(), models=frozenset({"iccache"}))
    settings = RouterSettings.model_validate(
        {
            "small": {"base_url": "http://127.0.0.1:1/v1", "model": "small-m"},
            "large": {"base_url": "http://127.0.0.1:2/v1", "model": "large-m"},
        }
    )
    models = {"small-m": Route.SMALL, "large-m": Route.LARGE}

    def ask(**iccache: object) -> RouterRequest:
        body = ChatCompletionRequest.model_validate(
            {
                "model": "iccache",
                "messages": [{"role": "user", "content": "hi"}],
                "iccache": iccache,
            }
        )
        return build_request(settings, models, body, chat_messages(body.messages), None, {}, caller)

    assert ask().force is None
    with pytest.raises(PermissionDenied, match="may not use model 'large-m'"):
        ask(force_model="large")


def test_a_broken_keys_file_never_shows_a_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "icc-a-key-that-must-never-be-logged-01"
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [{"tenant": "bad tenant", "key": secret}]}))
    with pytest.raises(ValueError, match=r"keys\.0\.tenant") as failed:
        KeyRing(path)
    assert secret not in str(failed.value)
    keys_file(path)
    ring = KeyRing(path)
    path.write_text(yaml.safe_dump({"keys": [{"tenant": "acme", "key": secret, "oops": 1}]}))
    os.utime(path, ns=(2, 2))
    with caplog.at_level("ERROR"):
        ring.reload()
    assert "keys.0.oops" in caplog.text
    assert secret not in caplog.text
    path.write_text(f"keys: [{{tenant: acme, key: {secret}")  # not YAML
    os.utime(path, ns=(3, 3))
    with caplog.at_level("ERROR"):
        ring.reload()
    assert "not YAML" in caplog.text
    assert secret not in caplog.text


def test_a_short_admin_key_stops_the_router(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN", "hunter2")
    with pytest.raises(ValueError, match="has 7 characters: it needs at least 16"):
        admin_key(TenancySettings(admin_key_env="ADMIN"))
    monkeypatch.setenv("ADMIN", "x" * 16)
    assert admin_key(TenancySettings(admin_key_env="ADMIN")) == "x" * 16
