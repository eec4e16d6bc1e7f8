"""/admin routes: API keys and the audit log of the caller's tenant (role admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard.api.deps import app_of, authorize
from dockyard.api.schemas import LimitQuery, OffsetQuery
from dockyard.errors import NotFound
from dockyard.services.auth import DEFAULT_TENANT, ROLE_NAMES, Forbidden, Principal
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
    action: str | None = None, limit: LimitQuery = 100, offset: OffsetQuery = 0,
    app: Dockyard = Depends(app_of), who: Principal = Depends(authorize),
) -> list[dict[str, Any]]:
    """The tenant's audit log, newest first; filter by ``action`` (e.g. ``run.create``)."""
    return await app.auth.audit_log.search(who.tenant, action=action, limit=limit,
                                           offset=offset)


class QuotaSet(BaseModel):
    """Per-tenant quotas; 0 is unlimited, null the server's default (DOCKYARD_TENANT_*);
    a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")
    max_concurrent_runs: int | None = Field(None, ge=0)
    runs_per_minute: int | None = Field(None, ge=0)
    max_stored_bytes: int | None = Field(None, ge=0)


@router.get("/quotas")
async def quotas(
    app: Dockyard = Depends(app_of), who: Principal = Depends(authorize)
) -> dict[str, Any]:
    """The caller's tenant: effective quotas and current usage."""
    return await app.quotas.describe(who.tenant)


@router.put("/tenants/{tenant_id}/quotas")
async def set_quotas(
    tenant_id: str, body: QuotaSet, app: Dockyard = Depends(app_of),
    who: Principal = Depends(authorize),
) -> dict[str, Any]:
    """Set a tenant's quotas. Only admins of the ``default`` tenant (the operator's) may: a
    tenant's own admins cannot raise their limits."""
    if who.tenant != DEFAULT_TENANT:
        raise Forbidden("only admins of the 'default' tenant set quotas",
                        role=who.role, action="manage_quotas")
    if await app.auth.tenants.get(tenant_id) is None:
        raise NotFound(f"tenant {tenant_id!r} does not exist", code="tenant_not_found")
    values = body.model_dump(exclude_unset=True)
    out = await app.quotas.set(tenant_id, values)
    await app.auth.record(who, "quota.set", "tenant", tenant_id, **{"values": values})
    return out
