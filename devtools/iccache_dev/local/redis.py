"""Run Redis 8.2 with the search module loaded, on a free loopback port."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from iccache_dev.local import assets
from iccache_dev.local.process import ManagedProcess, ServiceError, free_port


@dataclass
class LocalRedis:
    """A running ``redis-server`` with RediSearch; stop it with ``stop()``."""

    port: int
    password: str | None
    process: ManagedProcess

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def stop(self) -> None:
        self.process.stop()


def start_redis(
    workdir: Path,
    *,
    port: int | None = None,
    password: str | None = None,
    timeout: float = 30.0,
    args: Sequence[str] = (),
) -> LocalRedis:
    """Start Redis in ``workdir`` (its log goes there) and wait until it answers PING
    with the search module loaded."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        str(assets.redis_server_binary()),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--loadmodule",
        str(assets.redisearch_module()),
    ]
    if password:
        argv += ["--requirepass", password]
    argv += list(args)
    proc = ManagedProcess(f"redis:{port}", argv, workdir / f"redis-{port}.log")
    server = LocalRedis(port=port, password=password, process=proc)
    client = server.client()

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        proc.wait_ready(ready, timeout)
        modules = {m[b"name"].decode() for m in client.module_list()}
        if "search" not in modules:
            raise ServiceError(f"redis:{port}: the search module is not loaded ({modules})")
    except BaseException:
        proc.stop()
        raise
    finally:
        client.close()
    return server
