"""Router settings: file, environment overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from iccache_contract.settings import RouterSettings

FILE = """
small: {base_url: "http://small:8000/v1", model: smol}
large: {base_url: "http://large:8000/v1", model: big, cost_per_token: 5}
retrieval: {max_examples: 2}
"""


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(FILE)
    monkeypatch.setenv("ICCACHE_RETRIEVAL__MAX_EXAMPLES", "4")
    monkeypatch.setenv("ICCACHE_ROUTING__POLICY", "threshold")
    s = RouterSettings.load(path)
    assert s.large.cost_per_token == 5
    assert s.retrieval.max_examples == 4  # the environment wins over the file
    assert s.retrieval.candidates == 16  # untouched defaults stay
    assert s.routing.policy == "threshold"


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "router.json"
    path.write_text(
        '{"small": {"base_url": "http://a/v1", "model": "a"},'
        ' "large": {"base_url": "http://b/v1", "model": "b"}}'
    )
    monkeypatch.setenv("ICCACHE_CONFIG", str(path))
    assert RouterSettings.load().small.model == "a"


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"routing": {"policy": "coin-flip"}}, "policy"),
        ({"retrieval": {"max_examples": -1}}, "max_examples"),
        ({"routing": {"exploration_rate": 2}}, "exploration_rate"),
        ({"tenancy": {"default_tenant": "has space"}}, "default_tenant"),
        ({"retrieval": {"typo_field": 1}}, "typo_field"),
        ({"large": {"base_url": "http://small:8000/v1", "model": "smol"}}, "different backends"),
    ],
)
def test_invalid_settings_name_the_field(patch: dict[str, object], needle: str) -> None:
    base: dict[str, object] = {
        "small": {"base_url": "http://small:8000/v1", "model": "smol"},
        "large": {"base_url": "http://large:8000/v1", "model": "big"},
    }
    with pytest.raises(ValidationError, match=needle):
        RouterSettings(**{**base, **patch})


def test_the_documented_example_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "sidecar" / "router.example.yaml"
    settings = RouterSettings.load(example)
    assert settings.routing.policy == "bandit"
    assert settings.small.cost_per_token < settings.large.cost_per_token
