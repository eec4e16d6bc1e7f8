"""/threads routes: CRUD, search, copy, prune, state and history."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse

from dockyard.api.deps import app_of, auth_filter_of, authorize, select_fields, tenant_of
from dockyard.api.schemas import (
    HistoryQuery,
    StateCheckpoint,
    StateUpdate,
    ThreadCount,
    ThreadCreate,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    _state_fields,
    reject_unsupported,
)
from dockyard.api.sse import EventStream, sse_response
from dockyard.errors import InvalidInput
from dockyard.services.auth import Principal
from dockyard.services.core import Dockyard

router = APIRouter(prefix="/threads", tags=["threads"])

_TTL = "thread TTLs are not implemented; prune threads with POST /threads/prune"


@router.post("")
async def create_thread(
    body: ThreadCreate, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    reject_unsupported(body, {"supersteps": "create the thread, then POST its state", "ttl": _TTL})
    return await app.threads.create(
        tenant, thread_id=body.thread_id, metadata=body.metadata,
        if_exists=body.if_exists or "raise",
    )


@router.post("/search")
async def search_threads(
    body: ThreadSearch, response: Response, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
    auth_filter: dict[str, Any] | None = Depends(auth_filter_of),
) -> list[dict[str, Any]]:
    rows = await app.threads.search(
        tenant, ids=body.ids, metadata=body.metadata, values=body.values, status=body.status,
        limit=body.limit, offset=body.offset, sort_by=body.sort_by, sort_order=body.sort_order,
        auth_filter=auth_filter,
    )
    if len(rows) == body.limit and body.limit > 0:
        response.headers["X-Pagination-Next"] = str(body.offset + body.limit)
    if body.extract:
        for row in rows:
            row["extracted"] = {k: extract_path(row, p) for k, p in body.extract.items()}
    return select_fields(rows, body.select + (["extracted"] if body.extract else [])
                         if body.select else None)


_STEP = re.compile(r"([A-Za-z0-9_\-]+)|\[(-?\d+)\]")


def extract_path(obj: Any, path: str) -> Any:
    """Follow a path like ``values.messages[-1].content``; missing parts give None."""
    if len(path) > 256:
        raise InvalidInput("extract paths are at most 256 characters")
    cur = obj
    for part in path.split("."):
        if not _STEP.match(part):  # an empty or malformed step names nothing (not the row)
            return None
        for m in _STEP.finditer(part):
            key, idx = m.group(1), m.group(2)
            try:
                cur = cur[key] if key is not None else cur[int(idx)]
            except (KeyError, IndexError, TypeError):
                return None
    return cur


def select_state(state: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Keep the ``select``ed fields of a thread state; ``values.<key>`` keeps one state key."""
    if not select:
        return state
    try:
        _state_fields(select)
    except ValueError as exc:
        raise InvalidInput(f"select: {exc}") from None
    out = {name: state[name] for name in select if name in state}
    if "values" not in out and isinstance(state.get("values"), dict):
        keys = [name[len("values."):] for name in select if name.startswith("values.")]
        if keys:
            out["values"] = {k: state["values"][k] for k in keys if k in state["values"]}
    return out


@router.post("/count")
async def count_threads(
    body: ThreadCount, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    auth_filter: dict[str, Any] | None = Depends(auth_filter_of),
) -> int:
    return await app.threads.count(
        tenant, metadata=body.metadata, values=body.values, status=body.status,
        auth_filter=auth_filter,
    )


@router.post("/prune")
async def prune_threads(
    body: ThreadPrune, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    n = await app.threads.prune(tenant, body.thread_ids, body.strategy)
    return {"pruned_count": n}


@router.get("/{thread_id}")
async def get_thread(
    thread_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    return await app.threads.get(tenant, thread_id)


@router.patch("/{thread_id}", response_model=None,
              responses={204: {"description": "Patched (Prefer: return=minimal)"}})
async def patch_thread(
    thread_id: str, body: ThreadPatch, prefer: str | None = Header(None),
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
) -> dict[str, Any] | Response:
    reject_unsupported(body, {"ttl": _TTL})
    thread = await app.threads.patch(tenant, thread_id, body.metadata)
    if prefer and "return=minimal" in prefer.replace(" ", "").lower():
        return Response(status_code=204)
    return thread


@router.delete("/{thread_id}", status_code=204)
async def delete_thread(
    thread_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
    who: Principal = Depends(authorize),
) -> Response:
    await app.threads.get_row(tenant, thread_id)  # 404/422 before touching runs
    # Stop the thread's active runs first so no executor writes into a deleted thread.
    await app.runs.cancel_many(tenant, thread_id=thread_id, run_ids=None, status=None)
    await app.threads.delete(tenant, thread_id)
    await app.auth.record(who, "thread.delete", "thread", thread_id)
    return Response(status_code=204)


@router.post("/{thread_id}/copy")
async def copy_thread(
    thread_id: str, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> dict[str, Any]:
    return await app.threads.copy(tenant, thread_id)


@router.get("/{thread_id}/state")
async def get_state(
    thread_id: str, subgraphs: bool = False, select: list[str] | None = Query(None),
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    state = await app.threads.state(tenant, thread_id, subgraphs=subgraphs)
    return select_state(state, select)


@router.post("/{thread_id}/state")
async def update_state(
    thread_id: str, body: StateUpdate, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> dict[str, Any]:
    checkpoint = body.checkpoint or (
        {"checkpoint_id": body.checkpoint_id} if body.checkpoint_id else None
    )
    result = await app.threads.update_state(
        tenant, thread_id, values=body.values, as_node=body.as_node, checkpoint=checkpoint
    )
    await app.runs.state_updated(thread_id, {"values": body.values, "as_node": body.as_node,
                                             **result})
    await app.auth.record(who, "thread.update_state", "thread", thread_id,
                          as_node=body.as_node, checkpoint=result.get("checkpoint"))
    return result


@router.get("/{thread_id}/stream", response_class=EventStream)
async def join_thread_stream(
    thread_id: str, stream_mode: list[str] | None = Query(None),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
) -> StreamingResponse:
    """Every run on the thread, one after the other, live (``threads.join_stream``)."""
    modes = [m for m in stream_mode or [] if m]
    events = await app.runs.open_thread_stream(tenant, thread_id, last_event_id=last_event_id,
                                               modes=modes or None)
    return sse_response(events, heartbeat=app.settings.heartbeat_seconds)


@router.post("/{thread_id}/state/checkpoint")
async def get_state_at(
    thread_id: str, body: StateCheckpoint, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    state = await app.threads.state(
        tenant, thread_id, checkpoint=body.checkpoint, subgraphs=body.subgraphs
    )
    return select_state(state, body.select)


@router.get("/{thread_id}/state/{checkpoint_id}")
async def get_state_by_id(
    thread_id: str, checkpoint_id: str, subgraphs: bool = False,
    select: list[str] | None = Query(None), app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    state = await app.threads.state(
        tenant, thread_id, checkpoint={"checkpoint_id": checkpoint_id}, subgraphs=subgraphs
    )
    return select_state(state, select)


@router.post("/{thread_id}/history")
async def post_history(
    thread_id: str, body: HistoryQuery, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> list[dict[str, Any]]:
    rows = await app.threads.history(
        tenant, thread_id, limit=body.limit, before=body.before, metadata=body.metadata,
        checkpoint=body.checkpoint,
    )
    return [select_state(row, body.select) for row in rows]


@router.get("/{thread_id}/history")
async def get_history(
    thread_id: str, limit: int = Query(10, ge=1, le=1000), before: str | None = None,
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
) -> list[dict[str, Any]]:
    return await app.threads.history(tenant, thread_id, limit=limit, before=before)
