"""Run llama.cpp's OpenAI-compatible server (``llama_cpp.server``, with prompt log-probabilities
added by ``llama_server``) for a GGUF model."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from iccache_dev.local.process import ManagedProcess, free_port


@dataclass
class LocalLLM:
    """A running llama.cpp server; ``base_url`` ends in ``/v1`` as OpenAI clients expect."""

    alias: str
    port: int
    process: ManagedProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.stop()


def llama_server_argv(
    model_path: Path,
    alias: str,
    port: int,
    n_ctx: int,
    n_threads: int,
    chat_format: str | None = None,
) -> list[str]:
    """The command line for one llama.cpp server bound to loopback."""
    extra = ["--chat_format", chat_format] if chat_format else []
    return [
        sys.executable,
        "-m",
        "iccache_dev.local.llama_server",  # llama_cpp.server plus prompt_logprobs
        "--model",
        str(model_path),
        "--model_alias",
        alias,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        # By default a new request cuts off the stream being generated; queue instead.
        "--interrupt_requests",
        "False",
        *extra,
    ]


def start_llm(
    model_path: Path,
    alias: str,
    workdir: Path,
    *,
    port: int | None = None,
    n_ctx: int = 2048,
    n_threads: int = 2,
    chat_format: str | None = None,
    timeout: float = 120.0,
) -> LocalLLM:
    """Start a server for ``model_path`` and wait until ``/v1/models`` answers."""
    port = port or free_port()
    argv = llama_server_argv(model_path, alias, port, n_ctx, n_threads, chat_format)
    proc = ManagedProcess(f"llm:{alias}:{port}", argv, workdir / f"llm-{alias}-{port}.log")
    url = f"http://127.0.0.1:{port}/v1/models"

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    proc.wait_ready(ready, timeout)
    return LocalLLM(alias=alias, port=port, process=proc)
