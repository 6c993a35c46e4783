"""Run Prometheus (Debian's ``prometheus`` package) on a loopback port, scraping what a
prometheus-operator would scrape for a ServiceMonitor, and ask it what a dashboard asks.

``service_monitor_job`` turns a ServiceMonitor (as the chart renders it) into the scrape
job prometheus-operator generates for it: Kubernetes service discovery of
EndpointSlices, kept by the Service's labels and the port's name, with the
``namespace``, ``service``, ``pod``, ``container``, ``endpoint`` and ``job`` labels the
dashboards and alerts use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from iccache_dev.local.process import ManagedProcess, ServiceError, free_port


def _label(name: str) -> str:
    """A Kubernetes label's name as a service discovery meta label's suffix."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def service_monitor_job(
    monitor: dict[str, Any], kubeconfig: Path, scrape_interval: str
) -> list[dict[str, Any]]:
    """The scrape jobs (one per endpoint) prometheus-operator makes of ``monitor``."""
    spec = monitor["spec"]
    meta = monitor["metadata"]
    namespaces = spec.get("namespaceSelector", {})
    discovery: dict[str, Any] = {"role": "endpointslice", "kubeconfig_file": str(kubeconfig)}
    if not namespaces.get("any"):
        names = namespaces.get("matchNames") or [meta["namespace"]]
        discovery["namespaces"] = {"names": names}
    keep_service = [
        {
            "source_labels": [
                f"__meta_kubernetes_service_label_{_label(key)}",
                f"__meta_kubernetes_service_labelpresent_{_label(key)}",
            ],
            "regex": f"({re.escape(value)});true",
            "action": "keep",
        }
        for key, value in sorted(spec["selector"].get("matchLabels", {}).items())
    ]
    jobs = []
    for n, endpoint in enumerate(spec["endpoints"]):
        port = endpoint["port"]
        relabel = [
            *keep_service,
            {
                "source_labels": ["__meta_kubernetes_endpointslice_port_name"],
                "regex": port,
                "action": "keep",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
            {"target_label": "endpoint", "replacement": port},
        ]
        jobs.append(
            {
                "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{n}",
                "scrape_interval": scrape_interval,
                "metrics_path": endpoint.get("path", "/metrics"),
                "kubernetes_sd_configs": [discovery],
                "relabel_configs": relabel,
            }
        )
    return jobs


@dataclass
class LocalPrometheus:
    """A running Prometheus; stop it with ``stop()``."""

    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise ServiceError(f"prometheus {path} {params}: {response.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (each item: metric, value)."""
        data = self._get("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            raise ServiceError(f"prometheus: {expr!r} is a {data['resultType']}, not a vector")
        result: list[dict[str, Any]] = data["result"]
        return result

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self._get("/api/v1/targets", state="active")[
            "activeTargets"
        ]
        return targets

    def stop(self) -> None:
        self.process.stop()


def start_prometheus(
    binary: Path, workdir: Path, scrape_configs: list[dict[str, Any]], *, timeout: float = 60.0
) -> LocalPrometheus:
    """Start ``binary`` (``scripts/build-cluster-tools`` builds one with Kubernetes
    service discovery, which Debian's package leaves out) in ``workdir``: config, data
    and log there. Waits until it is ready."""
    if not binary.exists():
        raise ServiceError(f"{binary} is missing: scripts/build-cluster-tools builds it")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": scrape_configs}, sort_keys=False))
    port = free_port()
    argv = [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    proc = ManagedProcess(f"prometheus:{port}", argv, workdir / "prometheus.log")
    server = LocalPrometheus(port, proc)

    def ready() -> bool:
        try:
            return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        proc.wait_ready(ready, timeout)
    except BaseException:
        proc.stop()
        raise
    return server


def panel_queries(
    dashboard: dict[str, Any], variables: dict[str, str]
) -> list[tuple[str, list[str]]]:
    """Each panel's title and its targets' PromQL, with the dashboard's variables
    (``$name``) replaced by ``variables``."""

    def expand(expr: str) -> str:
        return re.sub(r"\$(\w+)", lambda m: variables.get(m.group(1), m.group(0)), expr)

    panels = []
    for panel in dashboard.get("panels", []):
        exprs = [expand(t["expr"]) for t in panel.get("targets", []) if t.get("expr")]
        if exprs:
            panels.append((panel.get("title", "?"), exprs))
    return panels
