"""Finding and assembling models that PyPI packages ship (on temporary files only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from iccache_dev.local import assets


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that looks like an installed package with two model parts."""
    pkg = tmp_path / "site" / "fake_model_parts"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('package code must never run')\n")
    (pkg / "data" / "m.part00").write_bytes(b"hello ")
    (pkg / "data" / "m.part01").write_bytes(b"world")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("ICCACHE_CACHE_DIR", str(tmp_path / "cache"))
    return pkg


def _model(sha256: str) -> assets.ModelFile:
    return assets.ModelFile(
        name="fake",
        filename="fake.gguf",
        sha256=sha256,
        parts=(
            ("fake_model_parts", "fake-model-parts", "data/m.part00"),
            ("fake_model_parts", "fake-model-parts", "data/m.part01"),
        ),
    )


def test_split_model_is_concatenated_in_order_and_verified(fake_package: Path) -> None:
    model = _model(hashlib.sha256(b"hello world").hexdigest())
    path = model.verify()
    assert path.read_bytes() == b"hello world"
    assert path.parent == assets.cache_dir() / "models"
    assert model.path() == path  # second call reuses the verified file


def test_wrong_checksum_leaves_no_file_behind(fake_package: Path) -> None:
    model = _model("0" * 64)
    with pytest.raises(assets.AssetNotFound, match="expected 0000"):
        model.path()
    assert list((assets.cache_dir() / "models").iterdir()) == []


def test_missing_package_names_the_pip_package() -> None:
    with pytest.raises(assets.AssetNotFound, match="'no-such-pkg' is not installed"):
        assets.package_dir("no_such_pkg_iccache", "no-such-pkg")


def test_missing_part_file_says_which(fake_package: Path) -> None:
    (fake_package / "data" / "m.part01").unlink()
    with pytest.raises(assets.AssetNotFound, match=r"m\.part01 is missing"):
        _model("0" * 64).path()
