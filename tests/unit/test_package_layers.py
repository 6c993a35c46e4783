"""The package layers hold: the layers contract (pyproject.toml, [tool.importlinter])
passes on the tree and fails when a forbidden import is added, and what the data-plane
image installs holds no developer tooling."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["iccache"][
    "distributions"
]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    path = ":".join(str(root / name) for name in DISTRIBUTIONS)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_tree(tmp: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in DISTRIBUTIONS:
        shutil.copytree(ROOT / name, tmp / name, ignore=ignore)
    return tmp


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    done = lint_imports(copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 7 kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "operator/iccache_operator/plan.py",
            "import iccache_sidecar.core.domain",
            "Packages follow the deployment",
        ),
        ("operator/iccache_operator/plan.py", "import redis", "never load the data plane"),
        (
            "sidecar/iccache_sidecar/embedding/models.py",
            "import iccache_dev.local.assets",
            "Packages follow the deployment",
        ),
        (
            "sidecar/iccache_sidecar/core/selection.py",
            "import iccache_sidecar.storage.layout",
            "The data plane's layers",
        ),
        ("contract/iccache_contract/names.py", "import kopf", "pydantic (and YAML) only"),
        (
            "operator/iccache_operator/api.py",
            "import iccache_operator.children.common",
            "The operator's layers",
        ),
        (
            "sidecar/iccache_sidecar/metrics.py",
            "import iccache_sidecar.workers",
            "The data plane's layers",
        ),
    ],
    ids=[
        "operator>sidecar",
        "operator>redis",
        "sidecar>dev",
        "core>storage",
        "contract>kopf",
        "api>children",
        "metrics>workers",
    ],
)
def test_a_forbidden_import_breaks_the_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    root = copy_tree(tmp_path)
    target = root / module
    target.write_text(target.read_text() + f"\n{line}  # added by the test\n")
    done = lint_imports(root)
    assert done.returncode != 0
    broken = [row for row in done.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(contract in row for row in broken), done.stdout


def test_the_data_plane_distribution_holds_no_dev_tooling(tmp_path: Path) -> None:
    """Build the wheels the data-plane image installs (sidecar/Dockerfile)
    and list their modules."""
    dockerfile = (ROOT / "sidecar" / "Dockerfile").read_text()
    copied = [
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and line.split()[1] in DISTRIBUTIONS
    ]
    assert copied == ["contract", "sidecar"]
    modules: set[str] = set()
    for dist in copied:
        source = tmp_path / "src" / Path(dist).name
        shutil.copytree(ROOT / dist, source, ignore=shutil.ignore_patterns("*.egg-info"))
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-w",
                str(tmp_path / "wheels"),
                str(source),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    for wheel in (tmp_path / "wheels").glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            modules |= {n for n in z.namelist() if n.endswith(".py")}
    tops = {m.split("/")[0] for m in modules}
    assert tops == {"iccache_contract", "iccache_sidecar"}
    assert "iccache_sidecar/requestpath/service.py" in modules
    assert not [m for m in modules if "/local/" in m or "/bench/" in m or "iccache_dev" in m]
