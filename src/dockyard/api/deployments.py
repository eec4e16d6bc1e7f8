"""/deployment: which revision serves new threads (promote, canary, rollback), per-revision run
figures, thread migration; /revisions/{id}/env: a revision's environment variables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from dockyard.api.deps import app_of, authorize
from dockyard.services.auth import Principal
from dockyard.services.core import Dockyard

router = APIRouter(tags=["deployment"])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Promote(Strict):
    revision_id: str = Field(min_length=1, max_length=64)
    canary_percent: float | None = None
    auto_rollback: dict[str, Any] | None = None


class Rollback(Strict):
    to: str | None = Field(default=None, max_length=64)
    reason: str | None = Field(default=None, max_length=2000)


class MigrateThreads(Strict):
    to: str = Field(min_length=1, max_length=64)
    thread_ids: list[str] | None = Field(default=None, max_length=1000)
    from_revision: str | None = Field(default=None, max_length=64)
    dry_run: StrictBool = False


class RevisionEnv(Strict):
    env: dict[str, str | None]


@router.get("/deployment")
async def get_deployment(app: Dockyard = Depends(app_of),
                         who: Principal = Depends(authorize)) -> dict[str, Any]:
    """The current and canary revisions, the auto-rollback thresholds and recent changes."""
    return await app.deployments.status(who.tenant)


@router.post("/deployment/promote")
async def promote(body: Promote, app: Dockyard = Depends(app_of),
                  who: Principal = Depends(authorize)) -> dict[str, Any]:
    """Send all new threads to a ready revision, or ``canary_percent`` of them."""
    out = await app.deployments.promote(
        who.tenant, body.revision_id, actor=who.actor, canary_percent=body.canary_percent,
        auto_rollback=body.auto_rollback)
    app.notify_new_runs()  # worker processes start the revision's workers now
    await app.auth.record(who, "deployment.promote" if body.canary_percent is None
                          else "deployment.canary", "revision", body.revision_id,
                          canary_percent=body.canary_percent)
    return out


@router.post("/deployment/rollback")
async def rollback(body: Rollback, app: Dockyard = Depends(app_of),
                   who: Principal = Depends(authorize)) -> dict[str, Any]:
    """Drop the canary, or go back to the revision current before (or ``to``; ``base``)."""
    out = await app.deployments.rollback(who.tenant, actor=who.actor, to=body.to,
                                         reason=body.reason)
    app.notify_new_runs()
    await app.auth.record(who, "deployment.rollback", "revision", out["current_revision_id"],
                          reason=body.reason)
    return out


@router.get("/deployment/stats")
async def deployment_stats(
    window_seconds: float = Query(3600, gt=0, le=30 * 86400),
    app: Dockyard = Depends(app_of), who: Principal = Depends(authorize),
) -> list[dict[str, Any]]:
    """Runs ended in the window per serving revision: count, errors, error rate, p95."""
    return await app.deployments.stats(who.tenant, window_seconds)


@router.post("/deployment/threads/migrate")
async def migrate_threads(body: MigrateThreads, app: Dockyard = Depends(app_of),
                          who: Principal = Depends(authorize)) -> dict[str, Any]:
    """Move idle or interrupted threads to another revision (``dry_run``: only say which)."""
    out = await app.deployments.migrate_threads(
        who.tenant, to=body.to, thread_ids=body.thread_ids, from_revision=body.from_revision,
        dry_run=body.dry_run)
    if not body.dry_run:
        await app.auth.record(who, "threads.migrate", "revision", body.to,
                              moved=len(out["moved"]))
    return out


@router.put("/revisions/{revision_id}/env")
async def set_revision_env(revision_id: str, body: RevisionEnv, app: Dockyard = Depends(app_of),
                           who: Principal = Depends(authorize)) -> dict[str, Any]:
    """Set (string) or delete (null) a revision's environment variables. Its workers restart
    with them; values are never returned or logged."""
    names = await app.deployments.set_env(who.tenant, revision_id, body.env)
    app.notify_new_runs()
    await app.auth.record(who, "revision.env", "revision", revision_id, names=names)
    return {"revision_id": revision_id, "set": names}


@router.get("/revisions/{revision_id}/env")
async def list_revision_env(revision_id: str, app: Dockyard = Depends(app_of),
                            who: Principal = Depends(authorize)) -> list[dict[str, Any]]:
    """The names of a revision's environment variables (never their values)."""
    return await app.deployments.env_names(who.tenant, revision_id)
