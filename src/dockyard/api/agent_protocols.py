"""Agent protocols over HTTP: MCP (``/mcp``, Streamable HTTP) and A2A (``/a2a/{assistant_id}``,
JSON-RPC, with agent cards at the well-known paths).

Both read the raw body and answer every failure as a JSON-RPC error object (HTTP 200, or 400
for an unsupported ``MCP-Protocol-Version``), never with the REST API's error bodies or a 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from dockyard.api.deps import app_of, tenant_of
from dockyard.api.sse import sse_response
from dockyard.errors import DockyardError, InvalidInput
from dockyard.serde import json_dumps
from dockyard.services import jsonrpc
from dockyard.services.core import Dockyard
from dockyard.services.custom_auth import HandlerRefused
from dockyard.services.jsonrpc import RpcError
from dockyard.services.mcp import PROTOCOL_VERSIONS
from dockyard.streams.base import Event

log = logging.getLogger("dockyard.api")

mcp_router = APIRouter(tags=["mcp"])
a2a_router = APIRouter(tags=["a2a"])


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def _rpc_failure(rid: jsonrpc.RequestId, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, RpcError):
        return jsonrpc.error(rid, exc)
    if isinstance(exc, DockyardError):
        return jsonrpc.error(rid, jsonrpc.from_dockyard_error(exc))
    log.exception("jsonrpc_failed")
    return jsonrpc.error(rid, RpcError(jsonrpc.INTERNAL_ERROR, "Internal error"))


def _validate(message: Any) -> jsonrpc.RpcRequest:
    if isinstance(message, list):
        raise RpcError(jsonrpc.INVALID_REQUEST, "Invalid Request: batches are not supported")
    return jsonrpc.validate(message)


# ---- MCP ---------------------------------------------------------------------------------
@mcp_router.post("/mcp", responses={
    202: {"description": "A notification or a client's response: accepted, no body"}})
async def mcp_post(
    request: Request, app: Dockyard = Depends(app_of), tenant: str = Depends(tenant_of)
) -> Response:
    version = request.headers.get("mcp-protocol-version")
    if version is not None and version not in PROTOCOL_VERSIONS:
        err = RpcError(jsonrpc.INVALID_REQUEST,
                       f"Unsupported MCP-Protocol-Version {version!r}; supported: "
                       f"{list(PROTOCOL_VERSIONS)}")
        return _json(jsonrpc.error(None, err), status=400)
    message: Any = None
    try:
        message = jsonrpc.decode(await request.body())
        req = _validate(message)
    except RpcError as exc:
        if isinstance(message, dict) and "method" not in message and (
            "result" in message or "error" in message
        ):
            return Response(status_code=202)  # a client's response: nothing asked, nothing to do
        return _json(jsonrpc.error(jsonrpc.request_id_of(message), exc))
    try:
        result = await app.mcp.handle(tenant, req)
    except Exception as exc:
        if req.is_notification:
            return Response(status_code=202)
        return _json(_rpc_failure(req.id, exc))
    if req.is_notification:
        return Response(status_code=202)
    return _json(jsonrpc.result(req.id, result))


@mcp_router.get("/mcp", status_code=405, response_class=Response,
                response_description="No server stream: the server never sends on its own")
async def mcp_get() -> Response:
    # Stateless: the server never sends requests or notifications of its own, so there is no
    # stream to open (the transport's answer for that is 405).
    return Response(status_code=405, headers={"Allow": "POST"})


@mcp_router.delete("/mcp", status_code=405, response_class=Response,
                   response_description="No sessions to terminate")
async def mcp_delete() -> Response:
    return Response(status_code=405, headers={"Allow": "POST"})  # no sessions to terminate


# ---- A2A ---------------------------------------------------------------------------------
@a2a_router.post("/a2a/{assistant_id}", response_model=None)
async def a2a_post(
    assistant_id: str, request: Request, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> Response:
    if getattr(request.state, "auth_filter", None) is not None:
        # An A2A context names a thread; a custom-auth filter (e.g. "owner") cannot scope
        # contexts yet, so a caller whose handler filters is refused rather than unscoped.
        raise HandlerRefused("A2A is not available to callers whose custom auth handler "
                             "returns a filter (threads.create_run)")
    message: Any = None
    try:
        message = jsonrpc.decode(await request.body())
        req = _validate(message)
    except RpcError as exc:
        return _json(jsonrpc.error(jsonrpc.request_id_of(message), exc))
    if req.method != "message/stream":
        try:
            result = await app.a2a.handle(tenant, assistant_id, req.method, req.params)
        except Exception as exc:
            return _json(_rpc_failure(req.id, exc))
        return _json(jsonrpc.result(req.id, result))
    try:
        run = await app.a2a.start(tenant, assistant_id, req.params)
    except Exception as exc:
        return _json(_rpc_failure(req.id, exc))

    async def events() -> AsyncIterator[Event]:
        n = 0
        try:
            async for item in app.a2a.stream(tenant, run):
                n += 1
                yield Event(id=str(n), event="message", data=json_dumps(jsonrpc.result(req.id, item)))
        except Exception as exc:
            yield Event(id=str(n + 1), event="message", data=json_dumps(_rpc_failure(req.id, exc)))

    return sse_response(events(), heartbeat=app.settings.heartbeat_seconds)


async def _card(request: Request, app: Dockyard, tenant: str, assistant_id: str | None) -> Response:
    if not assistant_id:
        raise InvalidInput("Give the agent as ?assistant_id=<assistant id or graph id>",
                           code="assistant_id_required")
    return _json(await app.a2a.agent_card(tenant, assistant_id, str(request.base_url)))


@a2a_router.get("/.well-known/agent-card.json")
async def agent_card(
    request: Request, assistant_id: str | None = None, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> Response:
    return await _card(request, app, tenant, assistant_id)


@a2a_router.get("/.well-known/agent.json")
async def agent_card_legacy(
    request: Request, assistant_id: str | None = None, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> Response:
    """The card's path before A2A 0.3, for older clients."""
    return await _card(request, app, tenant, assistant_id)
