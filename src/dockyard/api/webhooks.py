"""Webhook routes: the delivery log of outgoing webhooks, and inbound event triggers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from dockyard.api.deps import app_of, tenant_of
from dockyard.api.schemas import LimitQuery, OffsetQuery
from dockyard.services.core import Dockyard

router = APIRouter(tags=["webhooks"])
triggers_router = APIRouter(tags=["triggers"])


@router.get("/runs/{run_id}/webhooks")
async def run_webhooks(
    run_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> list[dict[str, Any]]:
    """The webhook deliveries of one run (newest first): status, attempts, last error."""
    return await app.webhook_log.search(tenant, run_id=run_id, status=None, limit=100, offset=0)


@router.get("/webhooks/deliveries")
async def list_deliveries(
    run_id: str | None = None, status: str | None = None, limit: LimitQuery = 100,
    offset: OffsetQuery = 0, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> list[dict[str, Any]]:
    """Webhook deliveries, newest first; filter by ``run_id`` and ``status``
    (pending, succeeded, failed)."""
    return await app.webhook_log.search(tenant, run_id=run_id, status=status, limit=limit,
                                        offset=offset)


@triggers_router.post("/triggers/{name}", status_code=202, responses={
    200: {"description": "A redelivered event (the first run), a challenge or a ping",
          "content": {"application/json": {"schema": {"type": "object"}}}},
    400: {"description": "A body that cannot be decoded"},
    401: {"description": "The signature does not check out"},
    404: {"description": "No trigger of that name is configured"},
    409: {"description": "An event of this idempotency key is still being processed"},
    413: {"description": "Request body over DOCKYARD_MAX_BODY_BYTES"}})
async def trigger(
    name: str, request: Request, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> JSONResponse:
    """Start a run from an external system's signed webhook (see ``dockyard.triggers``).

    202 with the new run's id; 200 with the first run's id for a redelivered event; 401 for a
    bad signature; 404 for an unknown trigger; 400/422 for a body that cannot be mapped.
    """
    # The raw bytes: signatures are computed over the body exactly as sent.
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    status, answer = await app.triggers.handle(tenant, name, body, headers)
    return JSONResponse(answer, status_code=status)
