"""Custom auth (``auth.path``) at the HTTP edge: call ``@auth.authenticate`` with the
parameters it names, and run the ``@auth.on`` handler of each route's resource action.

``EVENTS`` maps routes to the reference server's (resource, action) pairs, next to
``permissions.ROUTE_ACTIONS`` (the role check runs first, then the handler). The handler's
``value`` is the request's JSON body (the very object FastAPI validates afterwards, so a
handler that stamps ``value["metadata"]["owner"]`` changes what is created) plus the path's
ids. A filter it returns is checked here against the addressed resource's metadata (a
mismatch answers 404, as another tenant's resource does), and kept in ``request.state`` for
search routes, which pass it to the storage query (``auth_filter_of``).
"""

from __future__ import annotations

import inspect
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection, Request

from dockyard.errors import NotFound
from dockyard.services.auth import AuthFailure, Principal
from dockyard.services.core import Dockyard
from dockyard.services.custom_auth import CustomAuth, HandlerRefused, matches, principal_of, to_user

SUPPORTED = ("request", "scope", "path", "method", "path_params", "query_params", "headers",
             "authorization", "scopes", "user", "body")

_T, _A, _C, _S = "threads", "assistants", "crons", "store"
EVENTS: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/threads"): (_T, "create"),
    ("POST", "/threads/search"): (_T, "search"),
    ("POST", "/threads/count"): (_T, "search"),
    ("POST", "/threads/prune"): (_T, "delete"),
    ("GET", "/threads/{thread_id}"): (_T, "read"),
    ("PATCH", "/threads/{thread_id}"): (_T, "update"),
    ("DELETE", "/threads/{thread_id}"): (_T, "delete"),
    ("POST", "/threads/{thread_id}/copy"): (_T, "read"),
    ("GET", "/threads/{thread_id}/state"): (_T, "read"),
    ("POST", "/threads/{thread_id}/state"): (_T, "update"),
    ("GET", "/threads/{thread_id}/stream"): (_T, "read"),
    ("POST", "/threads/{thread_id}/state/checkpoint"): (_T, "read"),
    ("GET", "/threads/{thread_id}/state/{checkpoint_id}"): (_T, "read"),
    ("POST", "/threads/{thread_id}/history"): (_T, "read"),
    ("GET", "/threads/{thread_id}/history"): (_T, "read"),
    ("POST", "/threads/{thread_id}/commands"): (_T, "create_run"),
    ("POST", "/threads/{thread_id}/stream/events"): (_T, "read"),
    ("POST", "/threads/{thread_id}/runs"): (_T, "create_run"),
    ("POST", "/threads/{thread_id}/runs/stream"): (_T, "create_run"),
    ("POST", "/threads/{thread_id}/runs/wait"): (_T, "create_run"),
    ("GET", "/threads/{thread_id}/runs"): (_T, "read"),
    ("GET", "/threads/{thread_id}/runs/{run_id}"): (_T, "read"),
    ("DELETE", "/threads/{thread_id}/runs/{run_id}"): (_T, "delete"),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel"): (_T, "update"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/join"): (_T, "read"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/stream"): (_T, "read"),
    ("POST", "/runs"): (_T, "create_run"),
    ("POST", "/runs/stream"): (_T, "create_run"),
    ("POST", "/runs/wait"): (_T, "create_run"),
    ("POST", "/runs/batch"): (_T, "create_run"),
    ("POST", "/runs/cancel"): (_T, "update"),
    ("POST", "/assistants"): (_A, "create"),
    ("POST", "/assistants/search"): (_A, "search"),
    ("POST", "/assistants/count"): (_A, "search"),
    ("GET", "/assistants/{assistant_id}"): (_A, "read"),
    ("PATCH", "/assistants/{assistant_id}"): (_A, "update"),
    ("DELETE", "/assistants/{assistant_id}"): (_A, "delete"),
    ("GET", "/assistants/{assistant_id}/graph"): (_A, "read"),
    ("GET", "/assistants/{assistant_id}/schemas"): (_A, "read"),
    ("GET", "/assistants/{assistant_id}/subgraphs"): (_A, "read"),
    ("GET", "/assistants/{assistant_id}/subgraphs/{namespace}"): (_A, "read"),
    ("POST", "/assistants/{assistant_id}/versions"): (_A, "read"),
    ("POST", "/assistants/{assistant_id}/latest"): (_A, "update"),
    ("POST", "/threads/{thread_id}/runs/crons"): (_C, "create"),
    ("POST", "/runs/crons"): (_C, "create"),
    ("POST", "/runs/crons/search"): (_C, "search"),
    ("POST", "/runs/crons/count"): (_C, "search"),
    ("GET", "/runs/crons/{cron_id}"): (_C, "read"),
    ("PATCH", "/runs/crons/{cron_id}"): (_C, "update"),
    ("DELETE", "/runs/crons/{cron_id}"): (_C, "delete"),
    # Agent protocols start runs: MCP's on new (stateless) threads, A2A's on a context's thread.
    ("POST", "/mcp"): (_T, "create_run"),
    ("POST", "/a2a/{assistant_id}"): (_T, "create_run"),
    ("PUT", "/store/items"): (_S, "put"),
    ("GET", "/store/items"): (_S, "get"),
    ("DELETE", "/store/items"): (_S, "delete"),
    ("POST", "/store/items/search"): (_S, "search"),
    ("POST", "/store/namespaces"): (_S, "list_namespaces"),
}


def _arguments(fn: Any, conn: HTTPConnection) -> dict[str, Any]:
    names = set(inspect.signature(fn).parameters)
    scope = conn.scope
    headers = dict(scope.get("headers", []))
    auth = headers.get(b"authorization")
    available = {
        "request": lambda: conn,  # a Request (HTTP) or the WebSocket
        "scope": lambda: scope,
        "path": lambda: scope["path"],
        "method": lambda: scope.get("method", "GET"),
        "path_params": lambda: dict(scope.get("path_params", {})),
        "query_params": lambda: QueryParams(scope.get("query_string", b"")),
        "headers": lambda: headers,
        "authorization": lambda: auth.decode("latin-1") if auth else None,
        "scopes": lambda: [],
        "user": lambda: None,
        "body": lambda: None,
    }
    return {n: available[n]() for n in names if n in available}


async def authenticate_custom(dockyard: Dockyard, custom: CustomAuth,
                              conn: HTTPConnection) -> Principal:
    """The ``Principal`` of ``@auth.authenticate``'s answer; its 401 → ``AuthFailure``."""
    from langgraph_sdk import Auth

    fn = custom.authenticate_handler
    try:
        if inspect.iscoroutinefunction(fn):
            result = await fn(**_arguments(fn, conn))
        else:
            result = await run_in_threadpool(fn, **_arguments(fn, conn))
    except Auth.exceptions.HTTPException as exc:
        if exc.status_code == 401:
            raise AuthFailure("rejected", str(exc.detail)) from None
        raise HandlerRefused(str(exc.detail), exc.status_code, exc.headers) from None
    principal = principal_of(to_user(result))
    await dockyard.auth.known_tenant(principal.tenant)
    return principal


async def run_handler(dockyard: Dockyard, custom: CustomAuth, conn: HTTPConnection,
                      principal: Principal, event: tuple[str, str]) -> None:
    resource, action = event
    if custom.handler(resource, action) is None:
        return
    body: Any = None
    if isinstance(conn, Request) and conn.method in ("POST", "PUT", "PATCH", "DELETE"):
        try:
            body = await conn.json()  # cached on the request: the route validates this object
        except ValueError:
            body = None
    # The handler gets a copy; what it may change flows back into the body: the metadata
    # (when the route's body has that field) and a store namespace.
    value: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    ids = {k: v for k, v in conn.scope.get("path_params", {}).items()
           if k in ("thread_id", "assistant_id", "run_id", "cron_id")}
    value.update(ids)
    if resource == "store":
        if action == "get":
            ns = conn.query_params.get("namespace", "")
            value.update(namespace=tuple(ns.split(".")) if ns else (),
                         key=conn.query_params.get("key"))
        for k in ("namespace", "namespace_prefix"):
            if isinstance(value.get(k), list):
                value[k] = tuple(value[k])
    filters = await custom.authorize(principal, resource, action, value)
    if isinstance(body, dict):
        if isinstance(value.get("metadata"), dict) and _accepts(conn, "metadata"):
            body["metadata"] = value["metadata"]
        for k in ("namespace", "namespace_prefix"):
            if k in body and isinstance(value.get(k), tuple | list):
                body[k] = list(value[k])
    if filters is None:
        return
    conn.state.auth_filter = filters
    if action in ("search", "create") or resource == "store":
        return
    await _check_addressed(dockyard, principal.tenant, resource, ids, filters, value)


def _accepts(conn: HTTPConnection, key: str) -> bool:
    """Whether the route's JSON body model has the field ``key``."""
    field = getattr(conn.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    return key in (getattr(model, "model_fields", None) or {})


async def _check_addressed(dockyard: Dockyard, tenant: str, resource: str,
                           ids: dict[str, str], filters: dict[str, Any],
                           value: dict[str, Any]) -> None:
    """404 unless the resource the route addresses matches the handler's filter."""
    targets: list[dict[str, Any]] = []
    try:
        if resource == "threads":
            thread_ids = [ids["thread_id"]] if "thread_id" in ids else [
                t for t in value.get("thread_ids") or [] if isinstance(t, str)]
            for tid in thread_ids:
                targets.append(await dockyard.threads.get(tenant, tid))
            if not thread_ids and value.get("thread_id"):
                targets.append(await dockyard.threads.get(tenant, str(value["thread_id"])))
        elif resource == "assistants" and "assistant_id" in ids:
            targets.append(await dockyard.assistants.get(tenant, ids["assistant_id"]))
        elif resource == "crons" and "cron_id" in ids:
            targets.append(await dockyard.crons.get(tenant, ids["cron_id"]))
    except NotFound:
        return  # the route answers its own 404
    for row in targets:
        if not matches(row.get("metadata"), filters):
            raise NotFound(f"{resource[:-1].capitalize()} not found")
