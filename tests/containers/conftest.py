"""The container tier: the images built with ``make images``' builder (from its layer
cache when warm) and run with podman under the pods' security settings, on the host
network bound to loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from iccache_dev.local.images import build, missing_tools

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.containers)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Every image's reference, built first (seconds when nothing changed)."""
    absent = missing_tools()
    if absent:
        pytest.skip(
            f"the image builder cannot run here: {', '.join(absent)} not found "
            "(make setup installs Debian's buildah, podman, mmdebstrap and runc)"
        )
    return {image.name: image.ref for image in build(export=False, quiet=True)}
