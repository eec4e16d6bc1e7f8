"""/admin routes: API keys and the audit log of the caller's tenant (role admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard.api.deps import app_of, authorize
from dockyard.api.schemas import Limit, Offset
from dockyard.services.auth import ROLE_NAMES, Principal
from dockyard.services.core import Dockyard

router = APIRouter(prefix="/admin", tags=["admin"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(description=f"one of {', '.join(ROLE_NAMES)}")
    name: str | None = Field(None, max_length=200)
    expires_in_days: float | None = Field(None, gt=0)


@router.post("/keys", status_code=201)
async def create_key(
    body: KeyCreate, app: Dockyard = Depends(app_of), who: Principal = Depends(authorize)
) -> dict[str, Any]:
    """A new key of the caller's tenant; ``key`` is shown in this answer only."""
    return await app.auth.create_key(who.tenant, body.role, name=body.name,
                                     expires_in_days=body.expires_in_days, actor=who.actor)


@router.get("/keys")
async def list_keys(
    app: Dockyard = Depends(app_of), who: Principal = Depends(authorize)
) -> list[dict[str, Any]]:
    return await app.auth.list_keys(who.tenant)


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(
    key_id: str, app: Dockyard = Depends(app_of), who: Principal = Depends(authorize)
) -> Response:
    await app.auth.revoke_key(key_id, tenant=who.tenant, actor=who.actor)
    return Response(status_code=204)


@router.get("/audit")
async def audit(
    action: str | None = None, limit: Limit = Query(100), offset: Offset = Query(0),
    app: Dockyard = Depends(app_of), who: Principal = Depends(authorize),
) -> list[dict[str, Any]]:
    """The tenant's audit log, newest first; filter by ``action`` (e.g. ``run.create``)."""
    return await app.auth.audit_log.search(who.tenant, action=action, limit=limit,
                                           offset=offset)
