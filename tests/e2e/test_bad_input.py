"""Bad requests get a 4xx with a JSON ``detail`` that says what is wrong — never a 500.

Raw httpx, not the SDK: the SDK never sends most of these.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import make_server

pytestmark = pytest.mark.e2e

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.fixture
def thread_id(http: httpx.Client) -> str:
    resp = http.post("/threads", json={})
    assert resp.status_code == 200
    return str(resp.json()["thread_id"])


def detail(resp: httpx.Response, status: int | tuple[int, ...]) -> str:
    """Check the status and the error body; return the detail message."""
    allowed = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in allowed, (resp.status_code, resp.text)
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), str), body
    assert body["detail"]
    return str(body["detail"])


# ---- malformed bodies -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/threads"),
        ("POST", "/threads/search"),
        ("POST", "/assistants"),
        ("POST", "/assistants/search"),
        ("POST", "/runs/wait"),
        ("PUT", "/store/items"),
        ("POST", "/store/items/search"),
    ],
)
@pytest.mark.parametrize("raw", [b"{not json", b'{"a": 1,}', b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_malformed_json(http: httpx.Client, method: str, path: str, raw: bytes) -> None:
    resp = http.request(method, path, content=raw, headers={"content-type": "application/json"})
    msg = detail(resp, (400, 422))
    if raw.startswith(b"{"):
        assert "json" in msg.lower()


def test_malformed_json_on_thread_routes(http: httpx.Client, thread_id: str) -> None:
    for path in (f"/threads/{thread_id}/runs", f"/threads/{thread_id}/state",
                 f"/threads/{thread_id}/history"):
        detail(http.post(path, content=b"{oops", headers={"content-type": "application/json"}),
               (400, 422))
    detail(http.patch(f"/threads/{thread_id}", content=b"{",
                      headers={"content-type": "application/json"}), (400, 422))


def test_wrong_types(http: httpx.Client) -> None:
    assert "metadata" in detail(http.post("/threads", json={"metadata": "x"}), 422)
    assert "limit" in detail(http.post("/threads/search", json={"limit": "many"}), 422)
    assert "limit" in detail(http.post("/threads/search", json={"limit": -1}), 422)
    assert "offset" in detail(http.post("/assistants/search", json={"offset": -5}), 422)
    assert "graph_id" in detail(http.post("/assistants", json={}), 422)
    assert "value" in detail(http.put("/store/items", json={"namespace": ["a"], "key": "k",
                                                            "value": [1]}), 422)
    detail(http.put("/store/items", json={"namespace": ["a.b"], "key": "k", "value": {}}), 422)
    detail(http.put("/store/items", json={"namespace": ["a"], "key": "k", "value": {},
                                          "ttl": -1}), 422)
    # JSON booleans only: 0, 0.0 or "false" is not a boolean (found by the schema fuzzer).
    for value in (0, 0.0, "false"):
        assert "enabled" in detail(http.post("/runs/crons/count", json={"enabled": value}), 422)
    assert http.post("/runs/crons/count", json={"enabled": False}).status_code == 200
    assert "subgraphs" in detail(http.post("/runs/wait", json={"assistant_id": "three_steps",
                                                               "subgraphs": 1}), 422)
    # JSON integers only: true or "10" is not an integer (found by the schema fuzzer).
    for value in (True, "10"):
        assert "max_depth" in detail(http.post("/store/namespaces", json={"max_depth": value}),
                                     422)
        assert "limit" in detail(http.post("/threads/search", json={"limit": value}), 422)
        assert "priority" in detail(http.post("/runs", json={"assistant_id": "three_steps",
                                                             "priority": value}), 422)
    assert http.post("/store/namespaces", json={"max_depth": 2, "limit": 5.0}).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        ("POST", "/threads", b'{"metadata": {"x": "\\ud800"}}', "Unicode"),
        ("PUT", "/store/items", b'{"namespace": ["a"], "key": "k", "value": {"\\udc00": 1}}',
         "Unicode"),
        ("POST", "/assistants", b'{"graph_id": "three_steps", "name": "\\ud800"}', "Unicode"),
        ("POST", "/threads/search", b'{"offset": 99999999999999999999999}', "offset"),
        ("POST", "/assistants/search", b'{"offset": 9223372036854775808}', "offset"),
        ("POST", "/threads/search", b'{"limit": 1e400}', "limit"),
        ("PUT", "/store/items", b'{"namespace": ["a"], "key": "k", "value": {}, "ttl": 1e308}',
         "ttl"),
        ("POST", "/runs", b'{"assistant_id": "three_steps", "after_seconds": 1e400}',
         "after_seconds"),
        ("POST", "/runs", b'{"assistant_id": "three_steps", "config": {"recursion_limit": "x"}}',
         "recursion_limit"),
        ("POST", "/assistants", b'{"graph_id": "three_steps", "config": {"configurable": 5}}',
         "configurable"),
        ("POST", "/threads/search", b'{"select": ["password"]}', "select"),
        ("POST", "/assistants/search", b'{"select": ["password"]}', "select"),
        ("POST", "/threads/search", b'{"metadata": {"bad key!": 1}}', "bad key!"),
        ("POST", "/store/namespaces", b'{"max_depth": 0}', "max_depth"),
    ],
)
def test_out_of_range_values(http: httpx.Client, method: str, path: str, raw: bytes,
                             field: str) -> None:
    resp = http.request(method, path, content=raw, headers={"content-type": "application/json"})
    assert field in detail(resp, 422)


def test_deeply_nested_body(http: httpx.Client) -> None:
    raw = b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    detail(http.post("/threads", content=raw, headers={"content-type": "application/json"}),
           (400, 422))


# ---- ids ------------------------------------------------------------------------------------
def test_unknown_ids_are_404(http: httpx.Client, thread_id: str) -> None:
    for method, path in [
        ("GET", f"/threads/{MISSING}"),
        ("PATCH", f"/threads/{MISSING}"),
        ("DELETE", f"/threads/{MISSING}"),
        ("GET", f"/threads/{MISSING}/state"),
        ("POST", f"/threads/{MISSING}/history"),
        ("POST", f"/threads/{MISSING}/copy"),
        ("GET", f"/threads/{MISSING}/runs"),
        ("GET", f"/threads/{thread_id}/runs/{MISSING}"),
        ("POST", f"/threads/{thread_id}/runs/{MISSING}/cancel"),
        ("GET", f"/threads/{thread_id}/runs/{MISSING}/join"),
        ("DELETE", f"/threads/{thread_id}/runs/{MISSING}"),
        ("GET", f"/assistants/{MISSING}"),
        ("PATCH", f"/assistants/{MISSING}"),
        ("DELETE", f"/assistants/{MISSING}"),
        ("GET", f"/assistants/{MISSING}/graph"),
        ("GET", f"/assistants/{MISSING}/schemas"),
        ("POST", f"/assistants/{MISSING}/versions"),
        ("POST", f"/assistants/{MISSING}/latest"),
    ]:
        body: Any = {"metadata": {}} if method == "PATCH" else {}
        if path.endswith("/latest"):
            body = {"version": 1}
        kwargs = {"json": body} if method in ("POST", "PATCH") else {}
        detail(http.request(method, path, **kwargs), 404)
    detail(http.post(f"/threads/{MISSING}/runs", json={"assistant_id": "three_steps"}), 404)
    detail(http.post("/runs/wait", json={"assistant_id": MISSING}), 404)
    detail(http.post(f"/threads/{thread_id}/runs", json={"assistant_id": "no_such_graph"}), 404)
    # A missing store item is not an error: 200 null (what langgraph-sdk's get_item expects).
    missing = http.get("/store/items", params={"namespace": "nowhere", "key": "nothing"})
    assert missing.status_code == 200 and missing.json() is None
    detail(http.get(f"/threads/{thread_id}/state/{MISSING}"), 404)


def test_non_uuid_ids_are_422(http: httpx.Client, thread_id: str) -> None:
    for method, path in [
        ("GET", "/threads/not-a-uuid"),
        ("DELETE", "/threads/123"),
        ("GET", "/threads/not-a-uuid/state"),
        ("POST", "/threads/not-a-uuid/history"),
        ("GET", f"/threads/{thread_id}/runs/not-a-uuid"),
        ("GET", "/threads/not-a-uuid/runs"),
    ]:
        kwargs = {"json": {}} if method == "POST" else {}
        assert "UUID" in detail(http.request(method, path, **kwargs), 422)
    assert "thread_id" in detail(http.post("/threads", json={"thread_id": "nope"}), 422)
    assert "assistant_id" in detail(
        http.post("/assistants", json={"graph_id": "three_steps", "assistant_id": "nope"}), 422)
    detail(http.post("/threads/search", json={"ids": ["nope"]}), 422)
    detail(http.post("/threads/prune", json={"thread_ids": ["nope"]}), 422)
    # A non-UUID assistant id is taken as a graph id; an unknown one is not found.
    detail(http.get("/assistants/not-a-graph"), (404, 422))


def test_unknown_graph(http: httpx.Client) -> None:
    msg = detail(http.post("/assistants", json={"graph_id": "no_such_graph"}), (404, 422))
    assert "no_such_graph" in msg
    detail(http.patch(f"/assistants/{uuid.uuid5(uuid.NAMESPACE_URL, 'three_steps')}",
                      json={"graph_id": "no_such_graph"}), (404, 422))


def test_conflicts(http: httpx.Client, thread_id: str) -> None:
    detail(http.post("/threads", json={"thread_id": thread_id}), 409)
    detail(http.post("/threads", json={"thread_id": thread_id, "if_exists": "explode"}), 422)


# ---- unknown and unsupported fields ---------------------------------------------------------
def test_unknown_fields_are_named(http: httpx.Client, thread_id: str) -> None:
    cases = [
        ("/threads", {"metdata": {}}, "metdata"),
        ("/threads/search", {"limt": 3}, "limt"),
        ("/assistants", {"graph_id": "three_steps", "configg": {}}, "configg"),
        ("/store/items/search", {"namespace_prefix": [], "filtr": {}}, "filtr"),
        (f"/threads/{thread_id}/runs", {"assistant_id": "three_steps", "inptu": {}}, "inptu"),
        (f"/threads/{thread_id}/history", {"limit": 1, "befor": "x"}, "befor"),
    ]
    for path, body, field in cases:
        assert field in detail(http.post(path, json=body), 422)


@pytest.mark.parametrize(
    ("field", "value"),
    [("feedback_keys", ["score"]), ("langsmith_tracer", {"project_name": "p"})],
)
def test_unsupported_run_fields(http: httpx.Client, thread_id: str, field: str, value: Any) -> None:
    body = {"assistant_id": "three_steps", "input": {"steps": []}, field: value}
    assert field in detail(http.post(f"/threads/{thread_id}/runs", json=body), 422)
    assert field in detail(http.post("/runs/wait", json=body), 422)


def test_unsupported_thread_fields(http: httpx.Client, thread_id: str) -> None:
    assert "ttl" in detail(http.post("/threads", json={"ttl": {"ttl": 5}}), 422)
    assert "supersteps" in detail(http.post("/threads", json={"supersteps": [{"updates": []}]}),
                                  422)
    assert "ttl" in detail(http.patch(f"/threads/{thread_id}", json={"metadata": {}, "ttl": 5}),
                           422)


# ---- enums ----------------------------------------------------------------------------------
def test_invalid_enum_values(http: httpx.Client, thread_id: str) -> None:
    run = {"assistant_id": "three_steps", "input": {"steps": []}}
    runs = f"/threads/{thread_id}/runs"
    for field, value in [("multitask_strategy", "whatever"), ("if_not_exists", "maybe"),
                         ("on_disconnect", "explode"), ("durability", "forever"),
                         ("interrupt_before", 5)]:
        assert field in detail(http.post(runs, json={**run, field: value}), 422)
    assert "on_completion" in detail(http.post("/runs", json={**run, "on_completion": "x"}), 422)
    assert "status" in detail(http.post("/threads/search", json={"status": "sleeping"}), 422)
    assert "status" in detail(http.post("/threads/count", json={"status": "sleeping"}), 422)
    assert "sort_order" in detail(http.post("/threads/search", json={"sort_order": "up"}), 422)
    detail(http.post("/threads/search", json={"sort_by": "password"}), 422)
    detail(http.post("/assistants/search", json={"sort_by": "config"}), 422)
    assert "strategy" in detail(http.post("/threads/prune", json={"thread_ids": [thread_id],
                                                                  "strategy": "shred"}), 422)
    detail(http.post("/assistants", json={"graph_id": "three_steps", "if_exists": "x"}), 422)
    detail(http.post(f"{runs}/{MISSING}/cancel", params={"action": "explode"}), (404, 422))
    detail(http.get(f"/assistants/{uuid.uuid5(uuid.NAMESPACE_URL, 'nested')}/graph",
                    params={"xray": "deep"}), 422)


@pytest.mark.parametrize("mode", ["bogus", ["values", "nonsense"]])
def test_unknown_stream_mode(http: httpx.Client, thread_id: str, mode: Any) -> None:
    body = {"assistant_id": "three_steps", "input": {"steps": []}, "stream_mode": mode}
    for path in (f"/threads/{thread_id}/runs", f"/threads/{thread_id}/runs/stream",
                 "/runs/stream"):
        msg = detail(http.post(path, json=body), 422)
        assert "stream_mode" in msg or "nonsense" in msg or "bogus" in msg
    # The thread is still usable: nothing was queued.
    assert http.get(f"/threads/{thread_id}").json()["status"] == "idle"


def test_bad_checkpoint_and_state_input(http: httpx.Client, thread_id: str) -> None:
    detail(http.post(f"/threads/{thread_id}/state/checkpoint",
                     json={"checkpoint": {"checkpoint_id": MISSING, "bogus": 1}}), 422)
    detail(http.post(f"/threads/{thread_id}/history", json={"limit": 0}), 422)
    detail(http.post(f"/threads/{thread_id}/history", json={"select": ["secrets"]}), 422)
    detail(http.get(f"/threads/{thread_id}/state", params={"select": "secrets"}), 422)
    # No graph has run on this thread yet: there is no state to update.
    detail(http.post(f"/threads/{thread_id}/state", json={"values": {"steps": ["x"]}}),
           (404, 409, 422))
    ran = http.post(f"/threads/{thread_id}/runs/wait",
                    json={"assistant_id": "three_steps", "input": {"steps": []}})
    assert ran.status_code == 200
    detail(http.post(f"/threads/{thread_id}/state",
                     json={"values": {"steps": ["x"]}, "as_node": "no_such_node"}), (400, 422))
    detail(http.post(f"/threads/{thread_id}/state",
                     json={"values": {"steps": 5}, "as_node": "c"}), (400, 422))
    detail(http.post(f"/threads/{thread_id}/state",
                     json={"values": {"steps": ["x"]}, "checkpoint_id": MISSING}), (404, 422))


def test_store_query_without_index(http: httpx.Client) -> None:
    msg = detail(http.post("/store/items/search", json={"namespace_prefix": [], "query": "hi"}),
                 (400, 422))
    assert "index" in msg


# ---- size limit -----------------------------------------------------------------------------
def test_body_over_limit(tmp_path: Path) -> None:
    srv = make_server(tmp_path, DOCKYARD_MAX_BODY_BYTES="2048")
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            big = {"metadata": {"blob": "x" * 4096}}
            assert "DOCKYARD_MAX_BODY_BYTES" in detail(http.post("/threads", json=big), 413)

            def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
                yield b'{"metadata": {"blob": "'
                for _ in range(8):
                    yield b"x" * 512
                yield b'"}}'

            detail(http.post("/threads", content=chunks(),
                             headers={"content-type": "application/json"}), 413)
            small = http.post("/threads", json={"metadata": {"blob": "x" * 100}})
            assert small.status_code == 200
    finally:
        srv.stop()
