"""The /store API over the same store the graphs use."""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidInput
from dockyard.services.quotas import QuotaService
from dockyard.storage.kvstore import DockyardStore


def _check_namespace(namespace: Any) -> tuple[str, ...]:
    if not isinstance(namespace, list | tuple) or not all(isinstance(p, str) for p in namespace):
        raise InvalidInput("namespace must be a list of strings")
    for label in namespace:
        if not label or "." in label or "\x00" in label:
            raise InvalidInput(f"Invalid namespace label {label!r}: labels are non-empty and "
                               "contain no '.' and no NUL")
    return tuple(namespace)


def _item(item: Any) -> dict[str, Any]:
    out = {
        "namespace": list(item.namespace),
        "key": item.key,
        "value": item.value,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
    }
    if getattr(item, "score", None) is not None:
        out["score"] = item.score
    return out


class StoreService:
    def __init__(self, store: DockyardStore, quotas: QuotaService | None = None) -> None:
        self.store = store
        self.quotas = quotas

    async def put(
        self, tenant: str, namespace: Any, key: str, value: Any, *, ttl: float | None = None,
        index: Any = None,
    ) -> None:
        ns = _check_namespace(namespace)
        if not ns:
            raise InvalidInput("namespace must not be empty")
        if not isinstance(value, dict):
            raise InvalidInput("value must be a JSON object")
        if index not in (None, False):
            raise InvalidInput("index is not supported: no store index is configured")
        if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
            raise InvalidInput("ttl must be a positive number of minutes")
        if self.quotas is not None:
            await self.quotas.check_stored_bytes(tenant)
        await self.store.for_tenant(tenant).aput(ns, key, value, ttl=ttl)
        if self.quotas is not None:
            self.quotas.forget_usage(tenant)

    async def get(
        self, tenant: str, namespace: Any, key: str, refresh_ttl: bool | None = None
    ) -> dict[str, Any] | None:
        """The item, or None: a missing item answers 200 ``null``, as the reference server
        does and as ``langgraph-sdk``'s ``store.get_item`` expects (it returns None)."""
        ns = _check_namespace(namespace)
        item = await self.store.for_tenant(tenant).aget(ns, key, refresh_ttl=refresh_ttl)
        return _item(item) if item is not None else None

    async def delete(self, tenant: str, namespace: Any, key: str) -> None:
        await self.store.for_tenant(tenant).adelete(_check_namespace(namespace), key)

    async def search(
        self, tenant: str, namespace_prefix: Any, *, filter: dict[str, Any] | None, limit: int, offset: int,
        query: str | None, refresh_ttl: bool | None = None,
    ) -> list[dict[str, Any]]:
        if limit < 0 or offset < 0:
            raise InvalidInput("limit and offset must be non-negative")
        items = await self.store.for_tenant(tenant).asearch(
            _check_namespace(namespace_prefix), filter=filter, limit=limit, offset=offset,
            query=query, refresh_ttl=refresh_ttl,
        )
        return [_item(i) for i in items]

    async def namespaces(
        self, tenant: str, *, prefix: Any, suffix: Any, max_depth: int | None, limit: int, offset: int
    ) -> list[list[str]]:
        out = await self.store.for_tenant(tenant).alist_namespaces(
            prefix=_check_namespace(prefix) if prefix else None,
            suffix=_check_namespace(suffix) if suffix else None,
            max_depth=max_depth, limit=limit, offset=offset,
        )
        return [list(ns) for ns in out]
