"""Cron routes (``/runs/crons``, ``/threads/{thread_id}/runs/crons``): runs on a schedule."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from dockyard.api.deps import app_of, auth_filter_of, tenant_of
from dockyard.api.schemas import CronCount, CronCreate, CronPatch, CronSearch
from dockyard.services.core import Dockyard
from dockyard.storage.base import utcnow

router = APIRouter(tags=["crons"])


async def _create(
    app: Dockyard, tenant: str, thread_id: str | None, body: CronCreate
) -> dict[str, Any]:
    return await app.crons.create(
        tenant, thread_id, schedule=body.schedule, payload=body.run_payload(),
        metadata=body.metadata, timezone=body.timezone, end_time=body.end_time,
        enabled=True if body.enabled is None else body.enabled,
        on_run_completed=body.on_run_completed,
    )


@router.post("/threads/{thread_id}/runs/crons")
async def create_thread_cron(
    thread_id: str, body: CronCreate, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    return await _create(app, tenant, thread_id, body)


@router.post("/runs/crons")
async def create_cron(
    body: CronCreate, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    return await _create(app, tenant, None, body)


@router.post("/runs/crons/search")
async def search_crons(
    body: CronSearch, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    auth_filter: dict[str, Any] | None = Depends(auth_filter_of),
) -> list[dict[str, Any]]:
    rows = await app.crons.search(
        tenant, assistant_id=body.assistant_id, thread_id=body.thread_id, enabled=body.enabled,
        metadata=body.metadata, limit=body.limit, offset=body.offset, sort_by=body.sort_by,
        sort_order=body.sort_order, auth_filter=auth_filter,
    )
    if not body.select:
        return rows
    now = utcnow()  # `now`: the server's time, as the reference API offers it
    return [{k: now if k == "now" else r[k] for k in body.select} for r in rows]


@router.post("/runs/crons/count")
async def count_crons(
    body: CronCount, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    auth_filter: dict[str, Any] | None = Depends(auth_filter_of),
) -> int:
    return await app.crons.count(
        tenant, assistant_id=body.assistant_id, thread_id=body.thread_id, enabled=body.enabled,
        metadata=body.metadata, auth_filter=auth_filter,
    )


@router.get("/runs/crons/{cron_id}")
async def get_cron(
    cron_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    return await app.crons.get(tenant, cron_id)


@router.patch("/runs/crons/{cron_id}")
async def patch_cron(
    cron_id: str, body: CronPatch, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    return await app.crons.patch(tenant, cron_id, body.changes())


@router.delete("/runs/crons/{cron_id}", status_code=204)
async def delete_cron(
    cron_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> Response:
    await app.crons.delete(tenant, cron_id)
    return Response(status_code=204)
