"""Thin async access to the Kubernetes API: server-side apply with one field manager,
create-if-missing, and reads. No decisions here."""

from __future__ import annotations

import base64
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.dynamic import DynamicClient
from kubernetes_asyncio.dynamic.exceptions import NotFoundError

from iccache_operator.children.common import MANAGER


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
        await self._dyn.server_side_apply(
            resource, body=manifest, name=meta["name"], namespace=meta.get("namespace"),
            field_manager=MANAGER, force_conflicts=True,
        )  # fmt: skip

    async def create_if_missing(self, manifest: dict[str, Any]) -> bool:
        meta = manifest["metadata"]
        if await self.get(
            manifest["apiVersion"], manifest["kind"], meta["name"], meta["namespace"]
        ):
            return False
        resource = await self._resource(manifest["apiVersion"], manifest["kind"])
        await self._dyn.create(resource, body=manifest, namespace=meta["namespace"])
        return True

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None:
        resource = await self._resource(api_version, kind)
        try:
            found = await self._dyn.get(resource, name=name, namespace=namespace)
        except NotFoundError:
            return None
        data: dict[str, Any] = found.to_dict()
        return data

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        secret = await self.get("v1", "Secret", name, namespace)
        if secret is None or key not in (secret.get("data") or {}):
            return None
        return base64.b64decode(secret["data"][key]).decode(errors="replace")
