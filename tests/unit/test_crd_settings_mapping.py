"""The CRD's public fields map onto the router's settings in one function
(``children.router.router_settings``). Most spec sections are the contract's settings
models under camelCase names (declared once); these tests check that the mapping
carries each of them whole: defaults agree, and every value the CRD admits reaches the
router unchanged (so a spec the API server took never renders a settings file the
router refuses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from iccache_contract.settings import (
    EmbeddingsApiSettings,
    IneligibleSettings,
    OpeningSettings,
    QualitySettings,
    ResponsesSettings,
    RetrievalSettings,
    RoutingSettings,
    ServerSettings,
    VerifierSettings,
)
from iccache_operator.api import (
    SERVER_FIELDS,
    EmbeddingsSpec,
    InContextCacheSpec,
    IneligibleSpec,
    OpeningSpec,
    QualitySpec,
    ResponsesSpec,
    RetrievalSpec,
    RouterSpec,
    RoutingSpec,
    VerifierSpec,
)
from iccache_operator.children.common import Owner
from iccache_operator.children.router import router_settings

SAMPLE = Path(__file__).resolve().parents[2] / "crds" / "samples" / "cpu-llamacpp.yaml"
OWNER = Owner("demo", "ml", "uid-1")
PAIRS = [
    ("retrieval", RetrievalSpec, RetrievalSettings),
    ("routing", RoutingSpec, RoutingSettings),
    ("routing.quality", QualitySpec, QualitySettings),
    ("cache.ineligible", IneligibleSpec, IneligibleSettings),
    ("responses", ResponsesSpec, ResponsesSettings),
    ("verifier", VerifierSpec, VerifierSettings),
    ("opening", OpeningSpec, OpeningSettings),
]


def render(section: str, values: dict[str, Any]) -> Any:
    """The settings section that ``section: values`` in the sample spec renders."""
    spec = yaml.safe_load(SAMPLE.read_text())["spec"]
    *parents, leaf = section.split(".")
    node = spec
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = values
    rendered: Any = router_settings(OWNER, InContextCacheSpec.model_validate(spec))
    for name in section.split("."):
        rendered = getattr(rendered, name)
    return rendered


def bounds(model: type[BaseModel]) -> list[tuple[str, Any]]:
    """Every (field, extreme value) the model's JSON schema admits, by its API name."""
    out = []
    for name, prop in model.model_json_schema(by_alias=True)["properties"].items():
        for key in ("minimum", "maximum"):
            if key in prop:
                out.append((name, prop[key]))
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            if key in prop:
                step = 1e-6 if key == "exclusiveMinimum" else -1e-6
                out.append((name, prop[key] + step))
        for value in prop.get("enum", []):
            out.append((name, value))
    return out


@pytest.mark.parametrize(("section", "spec", "settings"), PAIRS, ids=[p[0] for p in PAIRS])
def test_defaults_agree(section: str, spec: type[BaseModel], settings: type[BaseModel]) -> None:
    assert render(section, {}) == settings()
    assert set(spec.model_fields) == set(settings.model_fields), "a field is not mapped"


CASES = [(s, spec, name, value) for s, spec, _ in PAIRS for name, value in bounds(spec)]


@pytest.mark.parametrize(
    ("section", "spec", "field", "value"), CASES, ids=[f"{c[0]}.{c[2]}={c[3]}" for c in CASES]
)
def test_every_value_the_crd_admits_renders_valid_settings(
    section: str, spec: type[BaseModel], field: str, value: Any
) -> None:
    rendered = render(section, {field: value})
    by_api_name = {f.alias or n: n for n, f in spec.model_fields.items()}
    assert getattr(rendered, by_api_name[field]) == value


def rendered_server(values: dict[str, Any]) -> ServerSettings:
    """The server settings that ``router: values`` in the sample spec renders."""
    spec = yaml.safe_load(SAMPLE.read_text())["spec"]
    spec["router"] = values
    return router_settings(OWNER, InContextCacheSpec.model_validate(spec)).server


API_NAMES = {RouterSpec.model_fields[n].alias or n: n for n in SERVER_FIELDS}
SERVER_BOUNDS = [(f, v) for f, v in bounds(RouterSpec) if f in API_NAMES]


def test_router_server_fields_default_like_the_settings() -> None:
    rendered = rendered_server({})
    for name in SERVER_FIELDS:
        assert getattr(rendered, name) == ServerSettings.model_fields[name].default, name


@pytest.mark.parametrize(
    ("field", "value"), SERVER_BOUNDS, ids=[f"router.{f}={v}" for f, v in SERVER_BOUNDS]
)
def test_every_router_limit_the_crd_admits_renders_valid_settings(field: str, value: Any) -> None:
    assert getattr(rendered_server({field: value}), API_NAMES[field]) == value


def test_the_embeddings_route_maps_onto_the_routers_settings() -> None:
    spec = yaml.safe_load(SAMPLE.read_text())["spec"]
    assert router_settings(OWNER, InContextCacheSpec.model_validate(spec)).embeddings_api == (
        EmbeddingsApiSettings()
    )
    assert set(EmbeddingsSpec.model_fields) <= set(EmbeddingsApiSettings.model_fields)
    spec["embeddings"] = {"source": "backend", "baseUrl": "http://tei:80/v1", "backendModel": "e5"}
    rendered = router_settings(OWNER, InContextCacheSpec.model_validate(spec)).embeddings_api
    assert (rendered.source, rendered.base_url, rendered.backend_model) == (
        "backend",
        "http://tei:80/v1",
        "e5",
    )
