"""The OpenAPI document: FastAPI's, plus Dockyard's error answers, declared once.

FastAPI declares only the success response of each route and, for 422, its own
``HTTPValidationError``. Dockyard answers every error with one body (``errors.py``:
``{"detail": str, "code": str, ...}``, see ``app.py``'s handlers), so this module adds that body
as the ``Error`` component and the statuses a route can answer, chosen by what the route is:

- every route of the API (not the static UI): 503 (``storage_error``, ``event_bus_unavailable``,
  ``/ok?check_db=1`` when a dependency is down);
- a route that authenticates (``permissions.ROUTE_ACTIONS`` other than public): 401 (no or bad
  credentials), 403 (the role or a custom-auth handler refuses), 404 (a resource of the path or
  the body does not exist in the caller's tenant), 429 (per-tenant quotas, queue backpressure);
  and 409 unless the method only reads (GET);
- a route with parameters or a body: 422 (``invalid_input`` and friends, replacing FastAPI's
  ``HTTPValidationError``);
- a route with a body: 400 (malformed body) and 413 (``DOCKYARD_MAX_BODY_BYTES``).

A route declares more (or another body) with FastAPI's ``responses=``; one of the statuses above
declared there without content gets the ``Error`` body. The schemathesis fuzz test checks the
answers against this document (tests/e2e/test_fuzz.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from dockyard.api.permissions import PUBLIC, ROUTE_ACTIONS, app_routes

ERROR_REF = "#/components/schemas/Error"

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "description": "Every error answer: a message and a stable code users can search for.",
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "code": {"type": "string", "description": "Stable error code (e.g. not_found)."},
        "details": {"type": "object", "additionalProperties": True,
                    "description": "Structured context of some errors (e.g. retry_after)."},
        "errors": {
            "type": "array",
            "description": "422 for a request the schema refuses: one entry per problem.",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "required": ["detail", "code"],
    "additionalProperties": True,
}

DESCRIPTIONS = {
    "400": "Malformed request body",
    "401": "Missing, invalid, expired or revoked credentials",
    "403": "The caller's role (or a custom-auth handler) does not allow this",
    "404": "Not found in the caller's tenant",
    "409": "Conflicts with the resource's current state",
    "413": "Request body over DOCKYARD_MAX_BODY_BYTES",
    "422": "Invalid or unsupported input",
    "429": "Over a quota or the queue's capacity; retry after Retry-After seconds",
    "503": "A dependency (database, event bus) is unavailable",
}

_HEADERS = {
    "401": {"WWW-Authenticate": {"description": "The scheme to authenticate with",
                                 "schema": {"type": "string"}}},
    "429": {"Retry-After": {"description": "Seconds to wait before retrying",
                            "schema": {"type": "integer", "minimum": 0}}},
}

_READ_ONLY = {"get", "head"}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that adds the error answers (built once, cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary,
                               description=app.description, routes=app.routes)
            app.openapi_schema = with_errors(spec, _route_classes(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _route_classes(app: FastAPI) -> dict[tuple[str, str], str]:
    """``(method, path) → action class`` (``permissions.ROUTE_ACTIONS``), keyed as the spec."""
    return {(method.lower(), path): ROUTE_ACTIONS.get((method, path), "")
            for method, path, _ in app_routes(app.routes)}


def error_statuses(method: str, operation: dict[str, Any], route_class: str) -> list[str]:
    """The error statuses an operation can answer (see the module's docstring)."""
    statuses = ["503"]
    if route_class != PUBLIC:
        statuses += ["401", "403", "404", "429"]
        if method not in _READ_ONLY:
            statuses.append("409")
    if operation.get("parameters") or operation.get("requestBody"):
        statuses.append("422")
    if operation.get("requestBody"):
        statuses += ["400", "413"]
    return statuses


def with_errors(spec: dict[str, Any], classes: dict[tuple[str, str], str]) -> dict[str, Any]:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            wanted = error_statuses(method, operation, classes.get((method, path), ""))
            for status in sorted(set(wanted) | {s for s in responses if s[0] in "45"}):
                answer = responses.setdefault(status, {})
                content = answer.get("content", {}).get("application/json", {})
                # FastAPI's 422 (HTTPValidationError) is not what the handler answers; another
                # status (405 of /mcp) declared without content has none.
                if status in DESCRIPTIONS and (
                        not content or "HTTPValidationError" in str(content.get("schema"))):
                    answer["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}
                if answer.get("description") in (None, "", "Validation Error"):
                    answer["description"] = DESCRIPTIONS.get(status, "Error")
                if status in _HEADERS:
                    answer.setdefault("headers", _HEADERS[status])
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused not in str(spec["paths"]):
            schemas.pop(unused, None)
    return spec
