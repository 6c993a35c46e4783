"""Where the router finds its embedding model: settings, then the environment, then the
packaged all-MiniLM-L6-v2 (never a hub)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iccache_sidecar.core.errors import DependencyDown
from iccache_sidecar.embedding import MODEL_ENV, model_folder


def model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_the_settings_path_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configured, from_env = model_dir(tmp_path / "a"), model_dir(tmp_path / "b")
    monkeypatch.setenv(MODEL_ENV, str(from_env))
    assert model_folder(str(configured)) == configured
    assert model_folder(None) == from_env


def test_the_packaged_model_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV, raising=False)
    folder = model_folder(None)
    assert folder.name == "model"
    assert (folder / "config.json").is_file()


def test_a_folder_without_a_model_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MODEL_ENV, str(tmp_path))
    with pytest.raises(DependencyDown, match=rf"{tmp_path} \(from \${MODEL_ENV}\) is not a"):
        model_folder(None)
