"""MCP and A2A JSON-RPC endpoints in process: error paths (never a 500) and A2A's JSON shapes,
checked against a2a-sdk's own A2A 0.3 models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from a2a.compat.v0_3 import types as a2a_types
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from dockyard.services import jsonrpc
from dockyard.services.a2a import output_text, thread_of_context
from dockyard.services.mcp import tool_name
from tests.conftest import ONE_NODE_GRAPH as GRAPHS
from tests.conftest import NewDatabase


def _client(tmp_path: Path, database_url: str, http: dict[str, Any] | None = None) -> TestClient:
    (tmp_path / "g.py").write_text(GRAPHS)
    config: dict[str, Any] = {"graphs": {"g": "./g.py:graph"}}
    if http:
        config["http"] = http
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    settings = Settings.from_env({"data_dir": str(tmp_path / "data"), "database_url": database_url},
                                 environ={})
    return TestClient(create_app(load_project(tmp_path), settings))


@pytest.fixture
def client(tmp_path: Path, new_database: NewDatabase) -> Iterator[TestClient]:
    with _client(tmp_path, new_database()) as c:
        yield c


def _rpc(method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def _code(resp: Any) -> int:
    assert resp.status_code == 200, resp.text
    return int(resp.json()["error"]["code"])


# ---- JSON-RPC envelope -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/mcp", "/a2a/g"])
def test_malformed_requests_get_jsonrpc_errors(client: TestClient, path: str) -> None:
    assert _code(client.post(path, content=b"{not json")) == jsonrpc.PARSE_ERROR
    assert client.post(path, content=b"{not json").json()["id"] is None
    for bad in ([], [_rpc("ping")], "text", {"id": 3, "method": "ping"},
                {"jsonrpc": "2.0", "id": 4}, {"jsonrpc": "2.0", "id": 5, "method": 7},
                {"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}):
        assert _code(client.post(path, json=bad)) == jsonrpc.INVALID_REQUEST, bad
    resp = client.post(path, json={"jsonrpc": "1.0", "id": 9, "method": "ping"})
    assert _code(resp) == jsonrpc.INVALID_REQUEST and resp.json()["id"] == 9
    assert _code(client.post(path, json=_rpc("no/such/method"))) == jsonrpc.METHOD_NOT_FOUND
    assert _code(client.post(path, json=_rpc("tasks/get", [1, 2]))) == jsonrpc.INVALID_PARAMS


# ---- MCP -----------------------------------------------------------------------------------------

def test_mcp_methods_and_errors(client: TestClient) -> None:
    init = client.post("/mcp", json=_rpc("initialize", {"protocolVersion": "2025-06-18"}))
    assert init.json()["result"]["protocolVersion"] == "2025-06-18"
    assert "mcp-session-id" not in init.headers  # stateless
    assert _code(client.post("/mcp", json=_rpc("initialize", {}))) == jsonrpc.INVALID_PARAMS
    assert client.post("/mcp", json=_rpc("ping", rid="p")).json() == {
        "jsonrpc": "2.0", "id": "p", "result": {}}
    tools = client.post("/mcp", json=_rpc("tools/list")).json()["result"]["tools"]
    assert [t["name"] for t in tools] == ["g"]
    assert tools[0]["inputSchema"]["type"] == "object"
    for params in ({}, {"name": ""}, {"name": "g", "arguments": [1]}, {"name": "nope"}):
        assert _code(client.post("/mcp", json=_rpc("tools/call", params))) == jsonrpc.INVALID_PARAMS
    done = client.post("/mcp", json=_rpc("tools/call", {"name": "g", "arguments": {}}))
    assert done.json()["result"]["isError"] is False
    assert json.loads(done.json()["result"]["content"][0]["text"]) == {"steps": ["s1"]}
    # Refused run input is the tool's failure, not a protocol error.
    refused = client.post("/mcp", json=_rpc("tools/call", {"name": "g", "arguments": {"steps": 5}}))
    assert refused.status_code == 200
    # Notifications, and errors in them, are answered 202 with no body.
    for note in ({"jsonrpc": "2.0", "method": "notifications/initialized"},
                 {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "nope"}},
                 {"jsonrpc": "2.0", "id": 1, "result": {}}):
        resp = client.post("/mcp", json=note)
        assert resp.status_code == 202 and resp.content == b""
    assert client.post("/mcp", json=_rpc("ping"),
                       headers={"MCP-Protocol-Version": "nope"}).status_code == 400


def test_tool_names_are_safe() -> None:
    assert tool_name("my agent/v2") == "my_agent_v2"
    assert tool_name("") == "assistant"
    assert len(tool_name("x" * 300)) == 128


# ---- A2A -----------------------------------------------------------------------------------------

def test_a2a_card_and_task_shapes(client: TestClient) -> None:
    card = client.get("/.well-known/agent-card.json", params={"assistant_id": "g"}).json()
    a2a_types.AgentCard.model_validate(card)
    assert card["url"].endswith(f"/a2a/{card['url'].rsplit('/', 1)[1]}")
    message = {"role": "user", "messageId": "m1", "kind": "message",
               "parts": [{"kind": "data", "data": {"steps": ["x"]}}]}
    task = client.post("/a2a/g", json=_rpc("message/send", {"message": message})).json()["result"]
    parsed = a2a_types.Task.model_validate(task)
    assert parsed.status.state == a2a_types.TaskState.completed
    assert json.loads(task["artifacts"][0]["parts"][0]["text"]) == {"steps": ["x", "s1"]}
    got = client.post("/a2a/g", json=_rpc("tasks/get", {"id": task["id"]})).json()["result"]
    assert a2a_types.Task.model_validate(got).id == task["id"]
    # A client-chosen context id that is not a UUID maps to a stable thread and comes back as is.
    own = client.post("/a2a/g", json=_rpc("message/send", {
        "message": {**message, "contextId": "conversation-7"}})).json()["result"]
    assert own["contextId"] == "conversation-7"
    assert own["metadata"]["thread_id"] == thread_of_context("conversation-7")
    # The stream: the task first, then updates, as JSON-RPC results in SSE data lines.
    with client.stream("POST", "/a2a/g", json=_rpc("message/stream", {"message": message})) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    results = [e["result"] for e in events]
    assert results[0]["kind"] == "task"
    assert results[-1]["kind"] == "status-update" and results[-1]["final"] is True
    for r in results[1:]:
        model = (a2a_types.TaskStatusUpdateEvent if r["kind"] == "status-update"
                 else a2a_types.TaskArtifactUpdateEvent)
        model.model_validate(r)


def test_a2a_errors(client: TestClient) -> None:
    ok = {"role": "user", "messageId": "m", "parts": [{"kind": "text", "text": "{}"}]}
    send = "message/send"
    for params in ({}, {"message": "hi"}, {"message": {**ok, "parts": []}},
                   {"message": {**ok, "role": "robot"}}, {"message": {**ok, "messageId": 1}},
                   {"message": {**ok, "parts": [{"kind": "text"}]}},
                   {"message": {**ok, "parts": [{"kind": "data", "data": [1]}]}},
                   {"message": {**ok, "parts": [{"kind": "video"}]}},
                   {"message": {**ok, "parts": [{"kind": "text", "text": "not json"}]}},
                   {"message": {**ok, "contextId": 5}}):
        assert _code(client.post("/a2a/g", json=_rpc(send, params))) == jsonrpc.INVALID_PARAMS, params
    file_part = {"message": {**ok, "parts": [{"kind": "file", "file": {"uri": "x"}}]}}
    assert _code(client.post("/a2a/g", json=_rpc(send, file_part))) == -32005
    assert _code(client.post("/a2a/nope", json=_rpc(send, {"message": ok}))) == jsonrpc.INVALID_PARAMS
    for method in ("tasks/get", "tasks/cancel"):
        assert _code(client.post("/a2a/g", json=_rpc(method, {}))) == jsonrpc.INVALID_PARAMS
        for tid in ("not-a-uuid", str(uuid.uuid4()), 7):
            assert _code(client.post("/a2a/g", json=_rpc(method, {"id": tid}))) == -32001
    assert _code(client.post("/a2a/g", json=_rpc("tasks/pushNotificationConfig/set", {}))) == -32003
    assert _code(client.post("/a2a/g", json=_rpc("tasks/resubscribe", {}))) == -32004
    # A finished task cannot be canceled; a task id of another context is refused.
    task = client.post("/a2a/g", json=_rpc(send, {"message": ok})).json()["result"]
    assert _code(client.post("/a2a/g", json=_rpc("tasks/cancel", {"id": task["id"]}))) == -32002
    other = {"message": {**ok, "taskId": task["id"], "contextId": str(uuid.uuid4())}}
    assert _code(client.post("/a2a/g", json=_rpc(send, other))) == jsonrpc.INVALID_PARAMS
    # message/stream refuses bad input before any stream starts.
    bad = client.post("/a2a/g", json=_rpc("message/stream", {}))
    assert bad.headers["content-type"] == "application/json" and _code(bad) == jsonrpc.INVALID_PARAMS


def test_output_text() -> None:
    assert output_text({"messages": [{"type": "ai", "content": "hi"}]}) == "hi"
    assert output_text({"messages": [{"content": [{"type": "text", "text": "a"}, "b"]}]}) == "ab"
    assert json.loads(output_text({"x": 1, "__interrupt__": []})) == {"x": 1}
    assert thread_of_context(str(uuid.UUID(int=1))) == str(uuid.UUID(int=1))


def test_protocols_can_be_disabled(tmp_path: Path, new_database: NewDatabase) -> None:
    with _client(tmp_path, new_database(), {"disable_mcp": True, "disable_a2a": True}) as c:
        assert c.post("/mcp", json=_rpc("ping")).status_code == 404
        assert c.post("/a2a/g", json=_rpc("tasks/get", {"id": "x"})).status_code == 404
        assert c.get("/.well-known/agent-card.json?assistant_id=g").status_code == 404
