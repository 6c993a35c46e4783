"""The operator must import without the data plane's heavy dependencies."""

from __future__ import annotations

import subprocess
import sys

BLOCKER = """
import importlib.abc, sys
HEAVY = ("torch", "redis", "grpc", "sentence_transformers", "redisvl", "llama_cpp")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"blocked heavy import: {name}")
        return None
sys.meta_path.insert(0, Block())
import iccache_operator
print("imported", iccache_operator.__version__)
"""


def test_operator_imports_with_heavy_packages_blocked() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout


def test_blocker_really_blocks() -> None:
    """Guards the test above: the same blocker makes the sidecar's Redis launcher fail."""
    code = BLOCKER.replace("import iccache_operator", "import iccache_sidecar.local.redis")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "blocked heavy import: redis" in done.stderr
