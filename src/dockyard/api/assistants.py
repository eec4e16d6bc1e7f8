"""/assistants routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from dockyard.api.deps import app_of, auth_filter_of, authorize, select_fields, tenant_of
from dockyard.api.schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantPatch,
    AssistantSearch,
    AssistantVersions,
)
from dockyard.services.auth import Principal
from dockyard.services.core import Dockyard

router = APIRouter(prefix="/assistants", tags=["assistants"])


def _config(body: AssistantCreate | AssistantPatch) -> dict[str, Any] | None:
    return body.config.model_dump(exclude_none=True) if body.config is not None else None


@router.post("")
async def create_assistant(
    body: AssistantCreate, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    who: Principal = Depends(authorize),
) -> dict[str, Any]:
    row = await app.assistants.create(
        tenant, graph_id=body.graph_id, assistant_id=body.assistant_id, config=_config(body),
        context=body.context, metadata=body.metadata, if_exists=body.if_exists or "raise",
        name=body.name, description=body.description,
    )
    await app.auth.record(who, "assistant.create", "assistant", row["assistant_id"],
                          graph_id=row["graph_id"])
    return row


@router.post("/search")
async def search_assistants(
    body: AssistantSearch, response: Response, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
    auth_filter: dict[str, Any] | None = Depends(auth_filter_of),
) -> list[dict[str, Any]]:
    rows = await app.assistants.search(
        tenant, graph_id=body.graph_id, name=body.name, metadata=body.metadata,
        limit=body.limit, offset=body.offset, sort_by=body.sort_by, sort_order=body.sort_order,
        auth_filter=auth_filter,
    )
    if len(rows) == body.limit and body.limit > 0:
        response.headers["X-Pagination-Next"] = str(body.offset + body.limit)
    return select_fields(rows, body.select)


@router.post("/count")
async def count_assistants(
    body: AssistantCount, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    auth_filter: dict[str, Any] | None = Depends(auth_filter_of),
) -> int:
    return await app.assistants.count(
        tenant, graph_id=body.graph_id, name=body.name, metadata=body.metadata,
        auth_filter=auth_filter,
    )


@router.get("/{assistant_id}")
async def get_assistant(
    assistant_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    return await app.assistants.get(tenant, assistant_id)


@router.patch("/{assistant_id}")
async def patch_assistant(
    assistant_id: str, body: AssistantPatch, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> dict[str, Any]:
    row = await app.assistants.update(
        tenant, assistant_id, graph_id=body.graph_id, config=_config(body), context=body.context,
        metadata=body.metadata, name=body.name, description=body.description,
    )
    await app.auth.record(who, "assistant.patch", "assistant", row["assistant_id"],
                          version=row["version"])
    return row


@router.delete("/{assistant_id}", status_code=204)
async def delete_assistant(
    assistant_id: str, delete_threads: bool = False, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    deleted = await app.assistants.delete(tenant, assistant_id)
    await app.auth.record(who, "assistant.delete", "assistant", deleted,
                          delete_threads=delete_threads or None)
    if delete_threads:
        await app.threads.delete_for_assistant(tenant, deleted)
    return Response(status_code=204)


@router.get("/{assistant_id}/graph")
async def assistant_graph(
    assistant_id: str, xray: str = Query("false"), app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    return await app.assistants.graph(tenant, assistant_id, _xray(xray))


def _xray(raw: str) -> bool | int:
    low = raw.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no", ""):
        return False
    from dockyard.errors import InvalidInput

    try:
        return int(raw)
    except ValueError:
        raise InvalidInput("xray must be a boolean or a non-negative integer depth") from None


@router.get("/{assistant_id}/schemas")
async def assistant_schemas(
    assistant_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    return await app.assistants.schemas(tenant, assistant_id)


@router.get("/{assistant_id}/subgraphs")
async def assistant_subgraphs(
    assistant_id: str, recurse: bool = False, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    return await app.assistants.subgraphs(tenant, assistant_id, None, recurse)


@router.get("/{assistant_id}/subgraphs/{namespace}")
async def assistant_subgraphs_ns(
    assistant_id: str, namespace: str, recurse: bool = False, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    return await app.assistants.subgraphs(tenant, assistant_id, namespace, recurse)


@router.post("/{assistant_id}/versions")
async def assistant_versions(
    assistant_id: str, body: AssistantVersions, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> list[dict[str, Any]]:
    return await app.assistants.versions(
        tenant, assistant_id, metadata=body.metadata, limit=body.limit, offset=body.offset
    )


@router.post("/{assistant_id}/latest")
async def assistant_set_latest(
    assistant_id: str, body: AssistantLatest, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> dict[str, Any]:
    row = await app.assistants.set_latest(tenant, assistant_id, body.version)
    await app.auth.record(who, "assistant.set_latest", "assistant", row["assistant_id"],
                          version=body.version)
    return row
