"""Names and numbers the operator writes and the data plane reads (or the other way)."""

from __future__ import annotations

CONFIG_ENV = "ICCACHE_CONFIG"
"""Environment variable holding the path of the router's settings file."""

TENANT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
"""What a tenant name may look like (the CRD, the settings and the router check it)."""

HTTP_PORT = 8080
GRPC_PORT = 50051

HEALTH_PATH = "/healthz"
"""Liveness: the router process answers."""
READY_PATH = "/readyz"
"""Readiness: started, and at least one model answers."""
METRICS_PATH = "/metrics"

SUMMARY_LINE = "line"
"""The field of the replay job's JSON summary that the operator shows in
``status.replay.lastResult``."""
QUALITY_PATH = "/quality"
"""The quality budget's state of one router process (JSON, ``quality.QualityReport``);
the operator reads it from every router pod for ``status.quality``."""
