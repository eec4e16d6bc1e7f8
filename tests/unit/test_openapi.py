"""The OpenAPI document: valid OpenAPI 3.1, and it declares what the server answers — the
``Error`` body for every error status, text for /metrics, event streams for the stream routes
(api/openapi.py). tests/e2e/test_fuzz.py checks real answers against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from tests.conftest import ONE_NODE_GRAPH

ERROR = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    (tmp / "g.py").write_text(ONE_NODE_GRAPH)
    (tmp / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    settings = Settings.from_env({"data_dir": str(tmp / "data"), "auth": "keys"}, environ={})
    return create_app(load_project(tmp), settings).openapi()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in spec["paths"].items() for m, op in item.items()]


def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate(spec)
    assert "HTTPValidationError" not in json.dumps(spec)


def test_every_error_answer_is_the_error_body(spec: dict[str, Any]) -> None:
    body = spec["components"]["schemas"]["Error"]
    assert body["required"] == ["detail", "code"]
    for method, path, op in _operations(spec):
        assert "503" in op["responses"], (method, path)
        for status, answer in op["responses"].items():
            if status[0] in "45" and status != "405":
                schema = answer["content"]["application/json"]["schema"]
                assert schema == ERROR or path.endswith("/commands"), (method, path, status)


def test_statuses_follow_the_kind_of_route(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    # Public: no credentials to refuse.
    assert not {"401", "403"} & set(paths["/ok"]["get"]["responses"])
    # Authenticated, reads: no conflict; a body: malformed, too large, invalid.
    assert {"401", "403", "404", "422", "429"} <= set(paths["/threads/{thread_id}"]["get"]
                                                     ["responses"])
    assert "409" not in paths["/threads/{thread_id}"]["get"]["responses"]
    assert {"400", "409", "413", "422"} <= set(paths["/threads"]["post"]["responses"])
    assert "Retry-After" in paths["/threads"]["post"]["responses"]["429"]["headers"]


def test_non_json_answers(spec: dict[str, Any]) -> None:
    paths = spec["paths"]
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    streams = [(m, p) for m, p, op in _operations(spec)
               if "text/event-stream" in op["responses"].get("200", {}).get("content", {})]
    assert ("post", "/threads/{thread_id}/runs/stream") in streams
    assert ("post", "/runs/stream") in streams
    assert ("get", "/threads/{thread_id}/runs/{run_id}/stream") in streams
    assert ("get", "/threads/{thread_id}/stream") in streams
    assert ("post", "/threads/{thread_id}/stream/events") in streams
    assert list(paths["/threads/{thread_id}/runs/{run_id}/trace"]["get"]["responses"]["200"]
                ["content"]) == ["application/json"]


def test_the_run_routes_served_first_shadow_no_other_route() -> None:
    """The run and cron routers are included before the assistant, thread and store routers
    (routes are tried in order; creating a run is the hottest request). That order must not
    change which route answers: no earlier route matches a later one's path and method."""
    import re
    import uuid

    from fastapi.routing import APIRoute

    from dockyard.api import assistants, crons, runs, store, threads

    def sample(path: str) -> str:
        return re.sub(r"\{[^}:]+(:path)?\}",
                      lambda m: "a/b" if m.group(1) else str(uuid.uuid4()), path)

    early = [r for m in (crons, runs) for r in m.router.routes if isinstance(r, APIRoute)]
    late = [r for m in (assistants, threads, store) for r in m.router.routes
            if isinstance(r, APIRoute)]
    assert len(early) > 10 and len(late) > 10
    shadowed = [(q.path, r.path) for q in late for r in early
                if r.methods & q.methods and r.path_regex.match(sample(q.path))]
    assert shadowed == []
