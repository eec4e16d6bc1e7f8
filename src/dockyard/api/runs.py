"""Run routes, on threads and stateless: create, stream, wait, join, cancel, list, delete."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from dockyard.api.deps import app_of, authorize, tenant_of
from dockyard.api.schemas import RunCancelMany, RunCreate
from dockyard.api.sse import EventStream, sse_response
from dockyard.errors import InvalidInput
from dockyard.serde import json_dumps
from dockyard.services.auth import Principal, require, run_action
from dockyard.services.core import Dockyard
from dockyard.streams.base import Event

router = APIRouter(tags=["runs"])

DISCONNECT_POLL_SECONDS = 0.5


def _locations(run: dict[str, Any], suffix: str) -> dict[str, str]:
    base = f"/threads/{run['thread_id']}/runs/{run['run_id']}"
    return {"Location": f"{base}/{suffix}", "Content-Location": base}


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json_dumps(content)


async def _create(
    app: Dockyard, who: Principal, thread_id: str | None, body: RunCreate
) -> dict[str, Any]:
    """Every run the REST API creates: the body-level permission (a bare ``resume`` needs only
    the resume permission), then the run, then its audit entry."""
    payload = body.to_payload()
    action = run_action(payload, stateful=thread_id is not None)
    require(who, action)
    run = await app.runs.create(who.tenant, thread_id, payload)
    await app.auth.record(who, f"run.{'resume' if action == 'resume' else 'create'}", "run",
                          run["run_id"], thread_id=run.get("thread_id"),
                          assistant_id=run.get("assistant_id"))
    return run


def _stream(
    app: Dockyard, tenant: str, run: dict[str, Any], *, last_event_id: str | None = None,
    modes: list[str] | None = None, cancel_on_disconnect: bool = False,
) -> StreamingResponse:
    row = {"run_id": run["run_id"], "thread_id": run["thread_id"]}

    async def on_disconnect() -> None:
        fresh = await app.runs.queue.get(tenant, run["run_id"])
        if fresh is not None and fresh["status"] in ("pending", "running"):
            await app.runs.cancel(tenant, run["thread_id"], run["run_id"])

    events = app.runs.events(tenant, row, last_event_id=last_event_id, modes=modes)
    return sse_response(
        events, heartbeat=app.settings.heartbeat_seconds,
        on_disconnect=on_disconnect if cancel_on_disconnect else None,
        headers=_locations(run, "stream"),
    )


async def _result(
    app: Dockyard, tenant: str, run: dict[str, Any], request: Request, *, cancel: bool
) -> Any:
    """The run's result; with ``on_disconnect=cancel`` a client that hangs up cancels the run."""
    if not cancel:
        return await app.runs.result(tenant, run, created=True)
    waiter = asyncio.ensure_future(app.runs.result(tenant, run, created=True))
    try:
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=DISCONNECT_POLL_SECONDS)
            if done:
                return waiter.result()
            if await request.is_disconnected():
                fresh = await app.runs.queue.get(tenant, run["run_id"])
                if fresh is not None and fresh["status"] in ("pending", "running"):
                    await app.runs.cancel(tenant, run["thread_id"], run["run_id"])
                return None
    finally:
        if not waiter.done():
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter


# ---- stateful -------------------------------------------------------------------------
@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, body: RunCreate, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    run = await _create(app, who, thread_id, body)
    return _JSON(run, headers=_locations(run, "join"))


@router.post("/threads/{thread_id}/runs/stream", response_class=EventStream)
async def stream_run(
    thread_id: str, body: RunCreate, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> StreamingResponse:
    run = await _create(app, who, thread_id, body)
    return _stream(app, tenant, run, cancel_on_disconnect=body.on_disconnect == "cancel")


@router.post("/threads/{thread_id}/runs/wait")
async def wait_run(
    thread_id: str, body: RunCreate, request: Request, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    run = await _create(app, who, thread_id, body)
    result = await _result(app, tenant, run, request, cancel=body.on_disconnect == "cancel")
    return _JSON(result, headers=_locations(run, "join"))


@router.get("/threads/{thread_id}/runs")
async def list_runs(
    thread_id: str, limit: int = Query(10, ge=0, le=1000), offset: int = Query(0, ge=0),
    status: str | None = None, select: list[str] | None = Query(None),
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> list[dict[str, Any]]:
    rows = await app.runs.list_for_thread(tenant, thread_id, status=status, limit=limit, offset=offset)
    if select:
        rows = [{k: r[k] for k in select if k in r} for r in rows]
    return rows


@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(
    thread_id: str, run_id: str, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> dict[str, Any]:
    return await app.runs.get(tenant, thread_id, run_id)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204)
async def delete_run(
    thread_id: str, run_id: str, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    await app.runs.delete(tenant, thread_id, run_id)
    await app.auth.record(who, "run.delete", "run", run_id, thread_id=thread_id)
    return Response(status_code=204)


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", status_code=202,
             response_class=Response,
             responses={200: {"description": "Cancelled and stopped (wait=true)"}})
async def cancel_run(
    thread_id: str, run_id: str, wait: bool = False, action: str = "interrupt",
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    await app.runs.cancel(tenant, thread_id, run_id, action=action, wait=wait)
    await app.auth.record(who, "run.cancel", "run", run_id, thread_id=thread_id, mode=action)
    return Response(status_code=202 if not wait else 200)


@router.get("/threads/{thread_id}/runs/{run_id}/join")
async def join_run(
    thread_id: str, run_id: str, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    run = await app.runs.get(tenant, thread_id, run_id)
    return _JSON(await app.runs.result(tenant, run))


@router.get("/threads/{thread_id}/runs/{run_id}/stream", response_class=EventStream)
async def join_stream(
    thread_id: str, run_id: str, request: Request,
    cancel_on_disconnect: bool = False, stream_mode: list[str] | None = Query(None),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> StreamingResponse:
    run = await app.runs.get(tenant, thread_id, run_id)
    # The SDK sends `stream_mode=` (empty) when no mode is given: that means "all modes".
    modes = [m for m in stream_mode or [] if m]
    return _stream(
        app, tenant, run, last_event_id=last_event_id, modes=modes or None,
        cancel_on_disconnect=cancel_on_disconnect,
    )


# ---- stateless ------------------------------------------------------------------------
@router.post("/runs")
async def create_stateless_run(
    body: RunCreate, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    who: Principal = Depends(authorize),
) -> Response:
    run = await _create(app, who, None, body)
    return _JSON(run, headers=_locations(run, "join"))


@router.post("/runs/stream", response_class=EventStream)
async def stream_stateless_run(
    body: RunCreate, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    who: Principal = Depends(authorize),
) -> StreamingResponse:
    run = await _create(app, who, None, body)
    return _stream(app, tenant, run, cancel_on_disconnect=body.on_disconnect == "cancel")


@router.post("/runs/wait")
async def wait_stateless_run(
    body: RunCreate, request: Request, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    run = await _create(app, who, None, body)
    result = await _result(app, tenant, run, request, cancel=body.on_disconnect == "cancel")
    return _JSON(result, headers=_locations(run, "join"))


@router.post("/runs/batch")
async def batch_runs(
    body: list[RunCreate] = Body(...), app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> list[dict[str, Any]]:
    if len(body) > 1000:
        raise InvalidInput("A batch holds at most 1000 runs")
    return [await _create(app, who, None, b) for b in body]


@router.post("/runs/cancel", status_code=204)
async def cancel_runs(
    body: RunCancelMany, action: str = "interrupt", app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    await app.runs.cancel_many(
        tenant, thread_id=body.thread_id, run_ids=body.run_ids, status=body.status, action=action
    )
    await app.auth.record(who, "run.cancel_many", "run", None, thread_id=body.thread_id,
                          run_ids=body.run_ids, status=body.status, mode=action)
    return Response(status_code=204)


__all__ = ["Event", "router"]
