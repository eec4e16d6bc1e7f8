"""Thread-centric streaming routes (``langgraph-sdk`` ``client.threads.stream``).

* ``POST /threads/{thread_id}/commands`` — one protocol command, JSON in and out. Protocol
  errors (unknown interrupt, bad parameters…) are answered 200 with an error envelope, as
  the protocol defines; a body that is not a command envelope at all is a 400.
* ``POST /threads/{thread_id}/stream/events`` — SSE: the thread's events matching the body's
  ``channels``/``namespaces``/``depth``, replayed after ``since`` (a ``seq``), then live.
* ``WebSocket /threads/{thread_id}/stream/events`` — the same events and commands on one
  socket: ``subscription.subscribe``/``unsubscribe`` manage filters; other commands are
  answered in-band.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse

from dockyard.api.deps import app_of, authenticate, authorize, tenant_of
from dockyard.api.permissions import ROUTE_ACTIONS
from dockyard.api.sse import EventStream, sse_response
from dockyard.errors import DockyardError, InvalidInput, NotFound
from dockyard.services.auth import AuthFailure, Forbidden, Principal, command_action, permits, require
from dockyard.services.core import Dockyard
from dockyard.services.custom_auth import HandlerRefused
from dockyard.services.ids import new_id
from dockyard.services.protocol import EventFilter, ProtocolError, error, success

log = logging.getLogger("dockyard.api.protocol")
router = APIRouter(tags=["thread streaming"])


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Request body is not valid JSON: {exc}", code="invalid_json") from exc


def _not_a_command(cmd: Any) -> dict[str, Any] | None:
    """The error envelope for something that is not a command envelope, else None."""
    # bool is an int in Python, not in JSON: ``"id": false`` is no id (found by the fuzzer).
    if isinstance(cmd, dict) and isinstance(cmd.get("id"), int) \
            and not isinstance(cmd.get("id"), bool) and isinstance(cmd.get("method"), str):
        return None
    return error(cmd.get("id") if isinstance(cmd, dict) else None, "invalid_argument",
                 "a command is an object with an integer id and a string method")


def _since(body: dict[str, Any]) -> int | None:
    since = body.get("since")
    if since is None:
        return None
    if not isinstance(since, int) or isinstance(since, bool) or since < 0:
        raise InvalidInput("since must be a non-negative integer (a seq)")
    return since


_COMMAND = {"type": "object", "required": ["id", "method"], "properties": {
    "id": {"type": "integer"}, "method": {"type": "string"},
    # An object; anything else is answered in the envelope (invalid_argument), with 200.
    "params": {}}}
_ENVELOPE = {"type": "object", "required": ["type", "id"], "properties": {
    "type": {"enum": ["success", "error"]}, "id": {},
    "result": {"type": "object"}, "error": {"type": "string"}, "message": {"type": "string"},
    "meta": {"type": "object"}}}


@router.post("/threads/{thread_id}/commands", response_model=None, responses={
    200: {"description": "The command's answer (success or error envelope)",
          "content": {"application/json": {"schema": _ENVELOPE}}},
    400: {"description": "Not a command envelope: an error envelope",
          "content": {"application/json": {"schema": _ENVELOPE}}}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": _COMMAND}}}})
async def thread_command(
    thread_id: str, request: Request, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of), who: Principal = Depends(authorize),
) -> Response:
    cmd = await _body(request)
    bad = _not_a_command(cmd)
    if bad is not None:
        return _json(bad, 400)
    require(who, command_action(cmd["method"]))
    answer = await app.protocol.command(tenant, thread_id, cmd)
    await _audit_command(app, who, thread_id, cmd["method"])
    return _json(answer)


async def _audit_command(app: Dockyard, who: Principal, thread_id: str, method: str) -> None:
    if command_action(method) != "read":
        await app.auth.record(who, f"thread.command.{method}", "thread", thread_id)


@router.post("/threads/{thread_id}/stream/events", response_model=None,
             response_class=EventStream)
async def thread_events(
    thread_id: str, request: Request, app: Dockyard = Depends(app_of),
    tenant: str = Depends(tenant_of),
) -> StreamingResponse:
    body = await _body(request)
    try:
        flt = EventFilter.parse(body)
    except ProtocolError as exc:
        raise InvalidInput(exc.message) from exc
    events = await app.protocol.open_events(tenant, thread_id, flt, since=_since(body))
    return sse_response(events, heartbeat=app.settings.heartbeat_seconds)


@router.websocket("/threads/{thread_id}/stream/events")
async def thread_socket(websocket: WebSocket, thread_id: str) -> None:
    app: Dockyard = websocket.app.state.dockyard
    try:  # on the handshake; accepted first, so that the close code reaches the client
        who = await authenticate(
            websocket, ROUTE_ACTIONS[("WEBSOCKET", "/threads/{thread_id}/stream/events")])
        # Custom auth (auth.path): the handlers of reading the thread, as its HTTP stream's.
        await _custom_handler(app, websocket, who, "read")
    except (AuthFailure, Forbidden, HandlerRefused, NotFound) as exc:
        await websocket.accept()
        await websocket.close(code=4000 + exc.status, reason=exc.message[:120])
        return
    tenant = who.tenant
    await websocket.accept()
    run_checked = False  # the create_run handler, run once before the first command
    subscriptions: dict[str, asyncio.Task[None]] = {}
    send_lock = asyncio.Lock()

    async def send(data: bytes | str) -> None:
        async with send_lock:
            await websocket.send_text(data.decode() if isinstance(data, bytes) else data)

    async def pump(flt: EventFilter, since: int | None) -> None:
        try:
            events = await app.protocol.open_events(tenant, thread_id, flt, since=since)
            async for ev in events:
                await send(ev.data)
        except asyncio.CancelledError:
            raise
        except DockyardError as exc:
            await send(orjson.dumps(error(None, "invalid_argument", exc.message)))
            await websocket.close(code=4000 + exc.status)
        except Exception:
            log.exception("thread_socket_stream_failed thread_id=%s", thread_id)
            with contextlib.suppress(Exception):
                await websocket.close(code=1011)

    try:
        while True:
            raw = await websocket.receive_text()
            try:
                cmd = orjson.loads(raw)
            except orjson.JSONDecodeError:
                await send(orjson.dumps(error(None, "invalid_argument", "frame is not valid JSON")))
                continue
            bad = _not_a_command(cmd)
            if bad is not None:
                await send(orjson.dumps(bad))
                continue
            method, params = cmd["method"], cmd.get("params") or {}
            if method == "subscription.subscribe":
                try:
                    flt = EventFilter.parse(params)
                    since = _since(params)
                except (ProtocolError, InvalidInput) as exc:
                    await send(orjson.dumps(error(cmd["id"], "invalid_argument", str(exc))))
                    continue
                sub_id = new_id()
                await send(orjson.dumps(success(cmd["id"], {"subscription_id": sub_id,
                                                            "replayed_events": 0})))
                subscriptions[sub_id] = asyncio.create_task(pump(flt, since))
            elif method == "subscription.unsubscribe":
                task = subscriptions.pop(str(params.get("subscription_id")), None)
                if task is None:
                    await send(orjson.dumps(error(cmd["id"], "no_such_subscription",
                                                  f"unknown subscription {params.get('subscription_id')!r}")))
                    continue
                task.cancel()
                await send(orjson.dumps(success(cmd["id"], {})))
            elif not permits(who.role, command_action(method)):
                await send(orjson.dumps(error(cmd["id"], "forbidden",
                                              f"role '{who.role}' may not call {method}")))
            else:
                if not run_checked:  # as POST /threads/{id}/commands: threads.create_run
                    try:
                        await _custom_handler(app, websocket, who, "create_run")
                    except (HandlerRefused, NotFound) as exc:
                        await send(orjson.dumps(error(cmd["id"], "forbidden", exc.message)))
                        continue
                    run_checked = True
                await send(orjson.dumps(await app.protocol.command(tenant, thread_id, cmd)))
                await _audit_command(app, who, thread_id, method)
    except WebSocketDisconnect:
        pass
    finally:
        for task in subscriptions.values():
            task.cancel()
        await asyncio.gather(*subscriptions.values(), return_exceptions=True)


async def _custom_handler(app: Dockyard, websocket: WebSocket, who: Principal,
                          action: str) -> None:
    """Run custom auth's ``threads.<action>`` handler for the socket's thread (a no-op
    without custom auth, or for API-key/JWT callers, as on HTTP routes)."""
    custom = app.custom_auth
    if who.user is None or custom is None or not custom.has_handlers:
        return
    from dockyard.api.custom_auth import run_handler

    await run_handler(app, custom, websocket, who, ("threads", action))
