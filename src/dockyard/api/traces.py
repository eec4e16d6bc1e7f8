"""Debugging routes: a run's persisted trace, one span of it, and the queue overview.

Read-only and tenant-scoped like every route (``permissions.ROUTE_ACTIONS``: ``read``), so the
debugger UI, a viewer's script and an operator's dashboard see the same thing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from dockyard.api.deps import app_of, tenant_of
from dockyard.serde import json_dumps
from dockyard.services.core import Dockyard
from dockyard.services.traces import MAX_SPANS_PAGE

router = APIRouter(tags=["traces"])


class _JSON(JSONResponse):
    """orjson straight to bytes: a 2,000-span page skips FastAPI's per-field encoder.
    (A JSONResponse, so the OpenAPI document declares JSON, not a string.)"""

    def render(self, content: Any) -> bytes:
        return json_dumps(content)


@router.get("/threads/{thread_id}/runs/{run_id}/trace", response_class=_JSON)
async def run_trace(
    thread_id: str, run_id: str, limit: int = Query(500, ge=1, le=MAX_SPANS_PAGE),
    offset: int = Query(0, ge=0), kind: list[str] | None = Query(None),
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
) -> Response:
    """The run, its trace header (attempt, base checkpoint, totals) and a page of spans in
    start order: node tasks, LLM calls and tool calls with timings, status, next nodes, retry,
    error and token usage — without inputs and outputs (see the span route).
    ``next_offset`` is set when more spans follow."""
    return _JSON(await app.traces.trace(tenant, thread_id, run_id, limit=limit, offset=offset,
                                        kinds=kind))


@router.get("/threads/{thread_id}/runs/{run_id}/trace/spans/{seq}")
async def run_trace_span(
    thread_id: str, run_id: str, seq: int, attempt: int | None = Query(None, ge=1),
    app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    """One span with ``detail``: its input, output and, for a failure, the stack trace
    (values above ``DOCKYARD_TRACE_MAX_VALUE_BYTES`` come as a preview)."""
    return await app.traces.span(tenant, thread_id, run_id, seq, attempt)


@router.get("/queue")
async def queue_overview(
    limit: int = Query(50, ge=1, le=500), app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> dict[str, Any]:
    """The caller's tenant's queue: depth by status and priority, running runs with their
    worker and lease, the oldest pending runs, recent failures, and the workers running them."""
    return await app.traces.queue(tenant, limit=limit)
