"""Thin async access to the Kubernetes API: server-side apply with one field manager,
create-if-missing, and reads. No decisions here."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.dynamic import DynamicClient
from kubernetes_asyncio.dynamic.exceptions import NotFoundError

from iccache_operator.children.common import MANAGER


class KubeError(RuntimeError):
    """The API server refused a request."""


def _checked(result: Any) -> dict[str, Any] | None:
    """The object, None for 404, or KubeError: the async dynamic client returns failure
    Status objects instead of raising for some errors."""
    data: dict[str, Any] = result.to_dict() if hasattr(result, "to_dict") else dict(result or {})
    if data.get("kind") == "Status" and data.get("status") == "Failure":
        if data.get("code") == 404:
            return None
        raise KubeError(f"{data.get('code')} {data.get('reason')}: {data.get('message')}")
    return data


class Kube:
    def __init__(self, api: client.ApiClient, dynamic: DynamicClient) -> None:
        self._api = api
        self._dyn = dynamic

    @classmethod
    async def connect(cls) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig."""
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config()
        api = client.ApiClient()
        return cls(api, await DynamicClient(api))

    async def close(self) -> None:
        await self._api.close()

    async def _resource(self, api_version: str, kind: str) -> Any:
        return await self._dyn.resources.get(api_version=api_version, kind=kind)

    async def apply(self, manifest: dict[str, Any]) -> None:
        meta = manifest["metadata"]
        resource = await self._resource(manifest["apiVersion"], manifest["kind"])
        result = await self._dyn.server_side_apply(
            resource,
            body=manifest,
            name=meta["name"],
            namespace=meta.get("namespace"),
            field_manager=MANAGER,
            force_conflicts=True,
        )
        _checked(result)

    async def create_if_missing(self, manifest: dict[str, Any]) -> bool:
        meta = manifest["metadata"]
        if await self.get(
            manifest["apiVersion"], manifest["kind"], meta["name"], meta["namespace"]
        ):
            return False
        resource = await self._resource(manifest["apiVersion"], manifest["kind"])
        _checked(await self._dyn.create(resource, body=manifest, namespace=meta["namespace"]))
        return True

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None:
        resource = await self._resource(api_version, kind)
        try:
            found = await self._dyn.get(resource, name=name, namespace=namespace)
        except NotFoundError:
            return None
        return _checked(found)

    async def list_objects(
        self, api_version: str, kind: str, namespace: str, labels: dict[str, str]
    ) -> list[dict[str, Any]]:
        resource = await self._resource(api_version, kind)
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        found = _checked(
            await self._dyn.get(resource, namespace=namespace, label_selector=selector)
        )
        return list((found or {}).get("items") or [])

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete one object (its dependants in the background); False if it was gone."""
        resource = await self._resource(api_version, kind)
        try:
            await self._dyn.delete(
                resource, name=name, namespace=namespace, propagation_policy="Background"
            )
        except NotFoundError:
            return False
        return True
