"""Keep the Helm chart in step with its sources (one command; tests fail on drift).

    python scripts/gen_chart.py          # write everything below
    python scripts/gen_chart.py --check  # exit 1 and name what is stale

- charts/iccache/crds/: the CRD, byte for byte the file in crds/ (generated from the typed
  API by ``python -m iccache_operator.crd --write``).
- charts/iccache/values.schema.json: the values schema below, with ``sample.spec`` taken
  from the CRD's own schema, so a wrong sample is refused before anything is applied.
- deploy/manifests/: plain manifests for ``kubectl apply -k deploy/manifests`` (or -f),
  rendered from the chart with its defaults by ``helm template``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "iccache"
CRD_SOURCE = ROOT / "crds" / "iccache.dev_incontextcaches.yaml"
CRD_COPY = CHART / "crds" / CRD_SOURCE.name
SCHEMA_FILE = CHART / "values.schema.json"
MANIFESTS = ROOT / "deploy" / "manifests"
RELEASE, NAMESPACE = "iccache", "iccache-system"
KUBE_VERSION = "1.30.0"  # the oldest the chart supports (Chart.yaml kubeVersion)

RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        "limits": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
    },
}
DNS_LABEL = {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, **extra}


def _image(description: str) -> dict[str, Any]:
    return _object(
        {
            "repository": {"type": "string", "minLength": 1},
            "tag": {"type": "string", "description": "empty: the chart's appVersion"},
            "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        },
        description=description,
    )


def json_schema(node: Any) -> Any:
    """A CRD's OpenAPI v3.0 schema as JSON Schema draft-07: boolean exclusive bounds
    become numbers, int-or-string and nullable become type lists, Kubernetes extensions
    go (the API server still checks the CEL rules at apply time), and unknown keys are
    refused where Kubernetes would silently prune them."""
    if isinstance(node, list):
        return [json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), bool):
            del out[bound]
            if node[bound]:
                out[bound] = out.pop(limit)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def _sample_spec() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_SOURCE.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    converted: dict[str, Any] = json_schema(schema["properties"]["spec"])
    return converted


def values_schema() -> dict[str, Any]:
    sample_spec = _sample_spec()
    sample_spec["description"] = "the InContextCache's spec (checked against the CRD's schema)"
    return {
        "$schema": "https://json-schema.org/draft-07/schema#",
        "title": "Values of the iccache chart",
        **_object(
            {
                "global": {"type": "object", "description": "values shared with parent charts"},
                "image": _image("the operator image"),
                "sidecarImage": _image("the router/replay image the operator puts into pods"),
                "imagePullSecrets": {
                    "type": "array",
                    "items": _object({"name": {"type": "string"}}, required=["name"]),
                },
                "operator": _object(
                    {
                        "replicas": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 1,
                            "description": "0 (paused) or 1: the operator runs standalone",
                        },
                        "logLevel": {"enum": ["info", "debug", "quiet"]},
                        "healthPort": {"type": "integer", "minimum": 1024, "maximum": 65535},
                        "resources": RESOURCES,
                        "nodeSelector": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "tolerations": {"type": "array", "items": {"type": "object"}},
                        "affinity": {"type": "object"},
                        "podAnnotations": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "podLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "priorityClassName": {"type": "string"},
                    }
                ),
                "scope": {
                    "enum": ["cluster", "namespaced"],
                    "description": "cluster: watch every namespace; namespaced: only "
                    "watchNamespaces (RBAC follows)",
                },
                "watchNamespaces": {"type": "array", "items": DNS_LABEL, "uniqueItems": True},
                "rbac": _object({"create": {"type": "boolean"}}),
                "serviceAccount": _object(
                    {
                        "create": {"type": "boolean"},
                        "name": {"type": "string"},
                        "annotations": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                    }
                ),
                "metrics": _object(
                    {
                        "serviceMonitor": _object(
                            {
                                "enabled": {"type": "boolean"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                "labels": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            }
                        ),
                        "prometheusRule": _object(
                            {
                                "enabled": {"type": "boolean"},
                                "labels": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            }
                        ),
                        "dashboard": _object(
                            {
                                "enabled": {"type": "boolean"},
                                "labels": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            }
                        ),
                    }
                ),
                "sample": _object(
                    {
                        "enabled": {"type": "boolean"},
                        "name": DNS_LABEL,
                        "spec": sample_spec,
                    }
                ),
            }
        ),
    }


def helm() -> str:
    from iccache_dev.local.cluster import Binaries

    return Binaries.find()["helm"]


def render_manifests() -> dict[str, str]:
    """``helm template`` with the defaults, split into one file per kind, plus the
    CRD and a kustomization listing them."""
    done = subprocess.run(
        [
            helm(),
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBE_VERSION,
            # Plain manifests cannot be told which namespaces to watch: every one.
            "--set",
            "scope=cluster",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"helm template failed: {done.stderr.strip()}")
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    docs = [d for d in docs if "helm.sh/hook" not in d["metadata"].get("annotations", {})]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    files: dict[str, list[dict[str, Any]]] = {"namespace.yaml": [namespace]}
    for doc in docs:
        files.setdefault(f"{doc['kind'].lower()}.yaml", []).append(doc)
    header = (
        "# Generated by scripts/gen_chart.py from charts/iccache (defaults, scope cluster);"
        " do not edit.\n"
    )
    out = {
        name: header + yaml.safe_dump_all(items, sort_keys=False) for name, items in files.items()
    }
    out[CRD_SOURCE.name] = CRD_SOURCE.read_text()
    out["kustomization.yaml"] = header + yaml.safe_dump(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [
                CRD_SOURCE.name,
                "namespace.yaml",
                *sorted(n for n in out if n not in (CRD_SOURCE.name, "namespace.yaml")),
            ],
        },
        sort_keys=False,
    )
    return out


def chart_files() -> dict[Path, str]:
    return {
        CRD_COPY: CRD_SOURCE.read_text(),
        SCHEMA_FILE: json.dumps(values_schema(), indent=2) + "\n",
    }


def manifest_files() -> dict[Path, str]:
    """Rendered from the chart as it is on disk (so write chart_files() first)."""
    return {MANIFESTS / name: text for name, text in render_manifests().items()}


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.is_file() or p.read_text() != text]


def check(with_manifests: bool) -> list[Path]:
    """The stale or unexpected files (the chart's files first: manifests need them)."""
    old = stale(chart_files())
    if with_manifests and not old:
        files = manifest_files()
        old = stale(files) + [p for p in MANIFESTS.glob("*") if p not in files]
    return old


def write(with_manifests: bool) -> list[Path]:
    written = []
    for path, text in chart_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    if with_manifests:
        files = manifest_files()
        if MANIFESTS.exists():
            shutil.rmtree(MANIFESTS)
        MANIFESTS.mkdir(parents=True)
        for path, text in files.items():
            path.write_text(text)
            written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--no-manifests", action="store_true", help="skip helm template")
    args = parser.parse_args()
    if args.check:
        old = check(not args.no_manifests)
        for path in old:
            print(f"stale: {path.relative_to(ROOT)}", file=sys.stderr)
        if old:
            print("run: python scripts/gen_chart.py", file=sys.stderr)
        return 1 if old else 0
    for path in write(not args.no_manifests):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
