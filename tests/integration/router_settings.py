"""Router settings for one test over the session's local services (a module of its own,
so that test modules can import it: every test tier has a conftest.py)."""

from __future__ import annotations

import uuid
from typing import Any

from iccache_contract.settings import RouterSettings
from iccache_dev.local.llamacpp import LocalLLM
from iccache_dev.local.redis import LocalRedis


def make_settings(
    redis_: LocalRedis, small_: LocalLLM, large_: LocalLLM, **sections: dict[str, Any]
) -> RouterSettings:
    """Settings for one test: its own index and key prefix, loopback ports picked freely,
    no exploration (so routing is deterministic)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    base: dict[str, Any] = {
        "small": {
            "base_url": small_.base_url,
            "model": small_.alias,
            "cost_per_token": 0.2,
            "max_context_tokens": 2048,
            "timeout_seconds": 60,
        },
        "large": {
            "base_url": large_.base_url,
            "model": large_.alias,
            "cost_per_token": 1.0,
            "max_context_tokens": 2048,
            "timeout_seconds": 60,
        },
        "redis": {"url": redis_.url, "index_name": prefix, "key_prefix": prefix},
        "routing": {"exploration_rate": 0.0},
        # The stand-in large model (Gemma 3 270M) is a base model: it seldom ends an
        # answer within a test's few tokens, so the tests keep cut answers; the default
        # (not kept) has a test of its own.
        "cache": {"store_cut": True},
        # Tests read what the cache did; callers get the minimal view by default.
        "server": {
            "host": "127.0.0.1",
            "http_port": 0,
            "grpc_port": 0,
            "max_tokens_default": 16,
            "decision_details": "full",
        },
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return RouterSettings(**base)
