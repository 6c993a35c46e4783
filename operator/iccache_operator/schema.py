"""Turn pydantic models into a Kubernetes structural OpenAPI v3 schema.

CRDs accept only a subset of JSON Schema: no $ref, no anyOf-with-null for optional
fields, and every object either typed or marked to keep unknown fields. This inlines
definitions, drops nulls (absent means unset), and carries Kubernetes extensions
(``x-kubernetes-*``) given in ``json_schema_extra``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DROP = {"title", "$defs", "discriminator"}


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    cleaned: dict[str, Any] = _clean(raw, defs)
    return cleaned


def _clean(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_clean(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return _clean({**options[0], **rest}, defs)
        if all("type" in o for o in options) and {o["type"] for o in options} <= {
            "integer",
            "string",
        }:
            # int-or-string (Kubernetes quantities and ports)
            return _clean({**rest, "x-kubernetes-int-or-string": True}, defs)
        return _clean({**rest, "anyOf": options}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and value is None:
            continue
        if key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields instead
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020 puts the bound here; OpenAPI 3.0 wants a flag beside it.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: _clean(v, defs) for name, v in value.items()}
        else:
            out[key] = _clean(value, defs)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out.setdefault("x-kubernetes-preserve-unknown-fields", True)
    return out
