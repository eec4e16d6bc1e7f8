"""/store routes: the long-term memory the graphs share."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from dockyard.api.deps import app_of, tenant_of
from dockyard.api.schemas import StoreDelete, StoreNamespaces, StorePut, StoreSearch
from dockyard.services.core import Dockyard

router = APIRouter(prefix="/store", tags=["store"])


@router.put("/items", status_code=204)
async def put_item(body: StorePut, app: Dockyard = Depends(app_of),
                   tenant: str = Depends(tenant_of)) -> Response:
    await app.store_api.put(tenant, body.namespace, body.key, body.value, ttl=body.ttl, index=body.index)
    return Response(status_code=204)


@router.get("/items")
async def get_item(
    key: str, namespace: str = Query(""), refresh_ttl: bool | None = None,
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
) -> dict[str, Any] | None:
    ns = [p for p in namespace.split(".")] if namespace else []
    return await app.store_api.get(tenant, ns, key, refresh_ttl=refresh_ttl)


@router.delete("/items", status_code=204)
async def delete_item(body: StoreDelete, app: Dockyard = Depends(app_of),
                   tenant: str = Depends(tenant_of)) -> Response:
    await app.store_api.delete(tenant, body.namespace, body.key)
    return Response(status_code=204)


@router.post("/items/search")
async def search_items(body: StoreSearch, app: Dockyard = Depends(app_of),
                   tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    items = await app.store_api.search(
        tenant, body.namespace_prefix, filter=body.filter, limit=body.limit, offset=body.offset,
        query=body.query, refresh_ttl=body.refresh_ttl,
    )
    return {"items": items}


@router.post("/namespaces")
async def list_namespaces(
    body: StoreNamespaces, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    namespaces = await app.store_api.namespaces(
        tenant, prefix=body.prefix, suffix=body.suffix, max_depth=body.max_depth, limit=body.limit,
        offset=body.offset,
    )
    return {"namespaces": namespaces}
