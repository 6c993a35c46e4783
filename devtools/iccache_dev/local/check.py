"""``python -m iccache_dev.local.check``: verify what setup installed.

Prints each binary and model it finds; exits 1 with a message naming what is missing.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from iccache_dev.local import assets
from iccache_dev.local.onnx_export import ensure_minilm_onnx


def _redis_version() -> str:
    out = subprocess.run(
        [str(assets.redis_server_binary()), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return out.split()[2].removeprefix("v=") if out.startswith("Redis server") else out.strip()


def _import(module: str) -> str:
    mod = importlib.import_module(module)
    return str(getattr(mod, "__version__", "ok"))


CHECKS: list[tuple[str, Callable[[], object]]] = [
    ("redis-server", assets.redis_server_binary),
    ("redis-server version", _redis_version),
    ("RediSearch module", assets.redisearch_module),
    ("llama-cpp-python", lambda: _import("llama_cpp")),
    ("llama.cpp OpenAI server", lambda: _import("llama_cpp.server.app") and "ok"),
    *[(f"model {name}", model.verify) for name, model in assets.MODELS.items()],
    ("llama.cpp generates (SmolLM2, 8 tokens)", lambda: _generates()),
    ("embedding model all-MiniLM-L6-v2", assets.minilm_model_dir),
    ("all-MiniLM-L6-v2 for ONNX Runtime (exported once)", ensure_minilm_onnx),
    ("Natural Questions (anserini jar)", assets.nq_jar),
]


GENERATE = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
out = llm("The capital of France is", max_tokens=8, temperature=0.0)
print(repr(out["choices"][0]["text"].strip()))
"""


def _generates() -> str:
    """A few tokens from the small model, in a process of its own: a llama.cpp build that
    uses instructions this machine cannot run dies of a signal on its first token."""
    import subprocess

    model = assets.SMOLLM2_135M.path()
    done = subprocess.run(
        [sys.executable, "-c", GENERATE, str(model)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        why = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        raise RuntimeError(f"llama.cpp died ({why}): {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def main() -> int:
    failed = 0
    for label, check in CHECKS:
        try:
            value = check()
        except Exception as exc:
            failed += 1
            print(f"  MISSING  {label}: {exc}", file=sys.stderr)
        else:
            shown = value if not isinstance(value, Path) else str(value)
            print(f"  ok       {label}: {shown}")
    if failed:
        print(f"{failed} check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
