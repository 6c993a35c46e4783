"""``iccache serve`` in its own process over real Redis and the real embedder, with the
stand-in responder (``iccache_dev.bench.responder``) as each model: for tests of the
router's own behaviour under load, faults and signals, where the models' speed would
only blur what is measured (the soak, the fault and fuzz tests)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iccache_contract import names
from iccache_dev.local.process import ManagedProcess, free_port, http_ok


@dataclass
class StandIn:
    """One stand-in model server; ``kill`` and ``start`` it to make a model fail."""

    role: str
    port: int
    delay: float
    workdir: Path
    process: ManagedProcess | None = None
    answer: str | None = None  # None: the responder's own

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        argv = [sys.executable, "-m", "iccache_dev.bench.responder", "--port", str(self.port)]
        if self.answer is not None:
            argv += ["--answer", self.answer]
        self.process = ManagedProcess(
            f"stand-in {self.role}",
            [*argv, "--delay", str(self.delay)],
            self.workdir / f"stand-in-{self.role}.log",
        )
        self.process.wait_ready(self.answers, timeout=30)

    def answers(self) -> bool:
        return http_ok(f"{self.base_url}/models")

    def kill(self) -> None:
        if self.process is not None:
            self.process.proc.kill()
            self.process.stop()
            self.process = None


@dataclass
class StandInRouter:
    process: ManagedProcess
    url: str
    models: dict[str, StandIn] = field(default_factory=dict)
    log: Path | None = None

    def ready(self) -> bool:
        return http_ok(self.url + names.READY_PATH)


@contextlib.contextmanager
def standin_router(
    workdir: Path,
    redis_url: str,
    *,
    delay: float = 0.0,
    server: dict[str, Any] | None = None,
    prefix: str = "standin",
    **sections: dict[str, Any],
) -> Iterator[StandInRouter]:
    """A router whose small and large models are stand-ins answering after ``delay``
    seconds; ``server`` and other ``sections`` are merged into its settings file."""
    workdir.mkdir(parents=True, exist_ok=True)
    models = {role: StandIn(role, free_port(), delay, workdir) for role in ("small", "large")}
    http_port, grpc_port = free_port(), free_port()
    config: dict[str, Any] = {
        "small": {"base_url": models["small"].base_url, "model": "small", "cost_per_token": 0.2},
        "large": {"base_url": models["large"].base_url, "model": "large", "cost_per_token": 1.0},
        "redis": {"url": redis_url, "index_name": prefix, "key_prefix": prefix},
        "server": {
            "host": "127.0.0.1",
            "http_port": http_port,
            "grpc_port": grpc_port,
            "decision_details": "full",
        },
    }
    config["server"].update(server or {})
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    (workdir / "router.yaml").write_text(yaml.safe_dump(config))
    try:
        for model in models.values():
            model.start()
        serve = [sys.executable, "-m", "iccache_sidecar", "serve", "--config"]
        log = workdir / "router.log"
        with ManagedProcess("router", [*serve, str(workdir / "router.yaml")], log) as process:
            router = StandInRouter(process, f"http://127.0.0.1:{http_port}", models, log)
            process.wait_ready(router.ready, timeout=120)
            yield router
    finally:
        for model in models.values():
            model.kill()
