"""The committed CRD is generated from the typed API; samples validate against it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from iccache_operator.api import InContextCacheSpec
from iccache_operator.crd import CRD_FILE, render

SAMPLES = sorted((CRD_FILE.parent / "samples").glob("*.yaml"))


def test_committed_crd_matches_the_typed_api() -> None:
    assert CRD_FILE.read_text() == render(), "run `python -m iccache_operator.crd --write`"


def _walk(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        found.append(node)
        for v in node.values():
            found += _walk(v)
    elif isinstance(node, list):
        for v in node:
            found += _walk(v)
    return found


def test_schema_is_structural() -> None:
    schema = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]["schema"]
    for node in _walk(schema):
        assert "$ref" not in node
        assert node.get("additionalProperties") is not False
        if "properties" in node:
            assert "additionalProperties" not in node


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: Path(p).name)
def test_samples_are_valid_specs(sample: Path) -> None:
    InContextCacheSpec.model_validate(yaml.safe_load(sample.read_text())["spec"])
