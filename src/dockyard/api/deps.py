"""Request-scoped dependencies: the application object, the caller (``authorize``) and its
tenant (``tenant_of``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from dockyard.api.permissions import PUBLIC, route_allows
from dockyard.services.auth import ANONYMOUS_ADMIN, DEFAULT_TENANT, AuthFailure, Forbidden, Principal
from dockyard.services.core import Dockyard

# Public routes (liveness, docs, triggers authenticated by signatures) act for the default
# tenant with no permissions of their own.
PUBLIC_PRINCIPAL = Principal(DEFAULT_TENANT, "public")


async def app_of(request: Request) -> Dockyard:
    dockyard: Dockyard = request.app.state.dockyard
    return dockyard


def credentials(conn: HTTPConnection) -> str | None:
    """The API key of a request: ``X-Api-Key`` (what langgraph-sdk sends) or a Bearer token."""
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = conn.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else "\x00"  # malformed
    return None


async def authenticate(conn: HTTPConnection, route_class: str) -> Principal:
    """Authentication and the route-level permission check, for HTTP and WebSocket alike."""
    dockyard: Dockyard = conn.app.state.dockyard
    if route_class == PUBLIC:
        return PUBLIC_PRINCIPAL
    if not dockyard.auth.enabled:
        return ANONYMOUS_ADMIN
    try:
        token = credentials(conn)
        if dockyard.custom_auth is not None and not dockyard.auth.claims(token):
            from dockyard.api.custom_auth import authenticate_custom

            principal = await authenticate_custom(dockyard, dockyard.custom_auth, conn)
        else:
            principal = await dockyard.auth.authenticate(token)
    except AuthFailure as exc:
        client = conn.client.host if conn.client else None
        await dockyard.auth.audit_failure(exc, client=client, path=conn.url.path)
        raise
    conn.state.principal = principal  # known even when refused below (the 403 is audited)
    if not route_allows(principal.role, route_class):
        raise Forbidden(f"role '{principal.role}' may not call this route "
                        f"(action class '{route_class}')", role=principal.role,
                        action=route_class)
    return principal


async def authorize(conn: HTTPConnection) -> Principal:
    """The app-wide dependency: the one place a request's caller and permission are decided.

    The route's action class comes from the table built from ``permissions.ROUTE_ACTIONS``
    when the app was created. WebSocket routes authenticate in their handler (the socket must
    be accepted before it can be closed with 4401), through the same ``authenticate``.
    """
    if conn.scope["type"] != "http":
        return PUBLIC_PRINCIPAL
    cached: Principal | None = getattr(conn.state, "principal", None)
    if cached is not None:
        return cached
    method = "GET" if conn.scope["method"] == "HEAD" else conn.scope["method"]
    route = conn.scope["route"]
    route_class = conn.app.state.route_actions[(id(route), method)]
    principal = await authenticate(conn, route_class)
    conn.state.principal = principal
    custom = conn.app.state.dockyard.custom_auth
    if principal.user is not None and custom is not None and custom.has_handlers:
        from dockyard.api.custom_auth import EVENTS, run_handler

        event = EVENTS.get((method, route.path))
        if event is not None:
            await run_handler(conn.app.state.dockyard, custom, conn, principal, event)
    return principal


async def tenant_of(principal: Principal = Depends(authorize)) -> str:
    """The caller's tenant: every service call is scoped by it."""
    return principal.tenant


async def auth_filter_of(request: Request, _: Principal = Depends(authorize)
                         ) -> dict[str, Any] | None:
    """The metadata filter a custom auth handler returned for this search (else None)."""
    found: dict[str, Any] | None = getattr(request.state, "auth_filter", None)
    return found


def select_fields(
    rows: list[dict[str, Any]], select: Sequence[str] | None
) -> list[dict[str, Any]]:
    if not select:
        return rows
    return [{k: r[k] for k in select if k in r} for r in rows]
