"""The ASGI application: routers, error mapping, body limits and lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.api import (
    admin,
    agent_protocols,
    assistants,
    crons,
    deployments,
    openapi,
    ops,
    protocol,
    revisions,
    runs,
    store,
    threads,
    traces,
    webhooks,
)
from dockyard.api.deps import authorize
from dockyard.api.permissions import route_table
from dockyard.config import ProjectConfig, Settings
from dockyard.errors import DockyardError
from dockyard.services.auth import AuthFailure, Forbidden
from dockyard.services.core import Dockyard
from dockyard.services.custom_auth import HandlerRefused
from dockyard.ui import mount_ui

log = logging.getLogger("dockyard.api")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by header or while reading.

    The body is read here, before the app sees it: an error raised from inside ``receive``
    would reach FastAPI's body parsing, which turns any failure into a 400. Bodies are parsed
    whole anyway, so buffering them (at most ``limit`` bytes) costs nothing extra.
    """

    def __init__(self, app: ASGIApp, limit: int,
                 streamed: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.app = app
        self.limit = limit
        # (method, path) of routes that stream their body under a limit of their own
        # (POST /revisions: DOCKYARD_MAX_REVISION_BYTES), so are neither buffered nor capped here.
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.streamed:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _too_large(self.limit, send)
                return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before sending it all
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await _too_large(self.limit, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)


async def _too_large(limit: int, send: Send) -> None:
    resp = JSONResponse(
        {"detail": f"Request body exceeds {limit} bytes (DOCKYARD_MAX_BODY_BYTES)",
         "code": "payload_too_large"},
        status_code=413,
    )
    await resp({"type": "http"}, _noop_receive, send)


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            return "Malformed JSON in request body: " + str(err.get("ctx", {}).get("error", msg))
        if err.get("type") == "extra_forbidden":
            msg = "unknown field (not part of the API)"
        parts.append(f"{loc or 'body'}: {msg}")
    return "Invalid request: " + "; ".join(parts)


def create_app(
    project: ProjectConfig, settings: Settings, *, dev: bool = False, role: str = "all"
) -> FastAPI:
    dockyard = Dockyard(project, settings, dev=dev, role=role)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await dockyard.start()
        try:
            yield
        finally:
            await dockyard.stop()

    app = FastAPI(
        title="Dockyard",
        version="0.1.0",
        summary="Self-hosted agent server compatible with the LangGraph Agent Server API",
        lifespan=lifespan,
        # Authentication and the permission check of every route (api/deps.py).
        dependencies=[Depends(authorize)],
    )
    app.state.dockyard = dockyard
    openapi.install(app)  # the Error body and the error statuses of every route (api/openapi.py)

    @app.exception_handler(DockyardError)
    async def dockyard_error(request: Request, exc: DockyardError) -> JSONResponse:
        if isinstance(exc, Forbidden):
            # A refused action of an authenticated caller goes to the audit log.
            principal = getattr(request.state, "principal", None)
            if principal is not None:
                try:
                    await dockyard.auth.audit_forbidden(principal, exc, path=request.url.path)
                except Exception:  # the 403 is the answer either way
                    log.exception("audit_forbidden_failed")
        if exc.status >= 500:
            log.error("request_failed code=%s message=%s", exc.code, exc.message)
        headers = None
        if exc.details.get("retry_after") is not None:
            headers = {"Retry-After": str(int(exc.details["retry_after"]))}
        if isinstance(exc, HandlerRefused) and exc.headers:
            headers = exc.headers
        if isinstance(exc, AuthFailure):
            headers = {"WWW-Authenticate": 'Bearer realm="dockyard"' if exc.reason == "missing"
                       else 'Bearer realm="dockyard", error="invalid_token"'}
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"detail": _validation_message(exc), "code": "invalid_input",
             "errors": _safe_errors(exc)},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "code": "http_error"},
                            status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error")
        return JSONResponse({"detail": "Internal server error", "code": "internal"},
                            status_code=500)

    app.include_router(ops.router)  # /ok and /metrics

    if not project.http.get("disable_meta"):

        @app.get("/info", tags=["system"])
        async def info() -> dict[str, Any]:
            return dockyard.info()

    http = project.http
    if not http.get("disable_threads") and not http.get("disable_runs"):
        # Thread streaming (commands, events, WebSocket). First: routes match in order, and
        # these are on the time-to-first-token path.
        app.include_router(protocol.router)
    # Runs before assistants and threads: FastAPI tries routes in order, and a run's
    # creation is the hottest request (no path of theirs is one of these).
    for name, module in (("runs", runs), ("assistants", assistants), ("threads", threads),
                         ("store", store)):
        if not http.get(f"disable_{name}"):
            if name == "runs":  # crons are runs on a schedule: served with the run routes
                app.include_router(crons.router)
            app.include_router(module.router)
    if not http.get("disable_runs"):
        app.include_router(webhooks.router)  # the delivery log of runs' webhooks
        app.include_router(traces.router)  # run traces and the queue overview (debugger)
    app.include_router(webhooks.triggers_router)  # 404 trigger_not_found unless configured
    if not http.get("disable_mcp"):
        app.include_router(agent_protocols.mcp_router)  # assistants as MCP tools
    if not http.get("disable_a2a"):
        app.include_router(agent_protocols.a2a_router)  # assistants as A2A agents, their cards
    app.include_router(admin.router)  # API keys and the audit log (role admin)
    app.include_router(revisions.router)  # `dockyard deploy`: immutable, verified revisions
    app.include_router(deployments.router)  # promote, canary, rollback, revision env
    # Every route needs an action class; a route missing from the table stops the server here.
    # The visual debugger: its page and assets are public; its calls to the API above carry the
    # user's key like any client's.
    mount_ui(app)
    app.state.route_actions = route_table(app.routes)
    if http.get("cors"):
        from starlette.middleware.cors import CORSMiddleware

        cors = http["cors"]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.get("allow_origins", []),
            allow_methods=cors.get("allow_methods", ["*"]),
            allow_headers=cors.get("allow_headers", ["*"]),
            allow_credentials=bool(cors.get("allow_credentials", False)),
            expose_headers=cors.get("expose_headers", ["Location", "Content-Location"]),
            max_age=int(cors.get("max_age", 600)),
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes,
                       streamed=frozenset({("POST", revisions.UPLOAD_PATH)}))
    if dockyard.tracer_provider is not None:  # outermost: the span covers the whole request
        ops.install_tracing(app, dockyard.tracer_provider)
    return app


def _safe_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:20]:
        out.append({"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg"),
                    "type": err.get("type")})
    return out
