"""Operations endpoints: ``/ok`` (health, per dependency) and ``/metrics`` (Prometheus).

The API serves them as routes. A ``dockyard worker`` has no HTTP API, yet its runs' latency and
duration live in its process, and Kubernetes wants a probe: with ``DOCKYARD_METRICS_PORT`` it
serves the same two endpoints from a tiny asyncio server (``serve_ops``), no framework needed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from dockyard.api.deps import app_of
from dockyard.services.core import Dockyard

log = logging.getLogger("dockyard.api")

router = APIRouter(tags=["system"])

# Health checks and scrapes would drown the traces of real requests.
DEFAULT_TRACE_EXCLUDED_URLS = r"/ok$,/metrics$"
_TRUE = {"1", "true", "yes", "on"}


async def health(app: Dockyard, check_db: bool) -> tuple[int, dict[str, Any]]:
    """``{"ok": true}``; with ``check_db``, each dependency's status (503 if one is down)."""
    if not check_db:
        return 200, {"ok": True}
    ok, checks = await app.check_health()
    if not ok:
        failing = ", ".join(f"{name}: {c.get('error')}" for name, c in checks.items() if not c["ok"])
        log.warning("health_check_failed %s", failing)
        return 503, {"ok": False, "checks": checks, "detail": failing, "code": "unhealthy"}
    return 200, {"ok": True, "checks": checks}


@router.get("/ok")
async def ok(check_db: bool = False, app: Dockyard = Depends(app_of)) -> JSONResponse:
    """Liveness; ``?check_db=1`` also pings the database and the event bus (readiness)."""
    status, body = await health(app, check_db)
    return JSONResponse(body, status_code=status)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(app: Dockyard = Depends(app_of)) -> Response:
    """Prometheus text format: queue depth, run latency/duration, active runs, leases, retries."""
    return Response(await app.metrics_text(), media_type=CONTENT_TYPE_LATEST)


def install_tracing(app: FastAPI, provider: Any) -> None:
    """A server span per HTTP request (opentelemetry-instrumentation-asgi), when tracing is on."""
    import os

    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ImportError:
        log.warning("http_tracing_disabled reason=%s",
                    "opentelemetry-instrumentation-asgi is not installed")
        return
    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls=os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS", DEFAULT_TRACE_EXCLUDED_URLS),
        tracer_provider=provider,
        # Per-message send/receive spans would add one span per SSE event.
        exclude_spans=["receive", "send"],
    )


# ---- the worker's own little server ------------------------------------------------------------

async def serve_ops(app: Dockyard, host: str, port: int) -> asyncio.Server:
    """Serve ``GET /ok[?check_db=1]`` and ``GET /metrics`` on ``host:port`` (HTTP/1.0, close)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await _answer(app, reader)
        except Exception:  # a bad or slow client; the server itself carries on
            status, ctype, body = 400, "text/plain", b"bad request\n"
        try:
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed",
                      503: "Service Unavailable"}.get(status, "Bad Request")
            writer.write(
                f"HTTP/1.0 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("ops_server_started host=%s port=%d", host, server.sockets[0].getsockname()[1])
    return server


async def _answer(app: Dockyard, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
    line = await asyncio.wait_for(reader.readline(), timeout=5)
    method, target, _ = line.decode("latin-1").split(" ", 2)
    while (await asyncio.wait_for(reader.readline(), timeout=5)).strip():
        pass  # headers: nothing in them matters here
    if method != "GET":
        return 405, "text/plain", b"method not allowed\n"
    url = urlsplit(target)
    if url.path == "/metrics":
        return 200, CONTENT_TYPE_LATEST, await app.metrics_text()
    if url.path == "/ok":
        check = parse_qs(url.query).get("check_db", ["0"])[-1].lower() in _TRUE
        status, body = await health(app, check)
        return status, "application/json", orjson.dumps(body)
    return 404, "text/plain", b"not found\n"
