"""Teams: API keys (401s and their audit), the permission matrix (every route, every role) and
tenant isolation (every route, generated from the app's routes)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.api.permissions import (
    PUBLIC,
    ROUTE_ACTIONS,
    app_routes,
    route_allows,
    route_table,
)
from dockyard.bundle import build_archive
from dockyard.config import Settings, load_project
from dockyard.services.auth import ROLES, KeyService, run_action
from tests.conftest import ONE_NODE_GRAPH as GRAPHS
from tests.conftest import NewDatabase


def _app(tmp_path: Path, database_url: str, auth: str = "keys") -> Any:
    (tmp_path / "g.py").write_text(GRAPHS)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    settings = Settings.from_env({"data_dir": str(tmp_path / "data"), "database_url": database_url,
                                  "auth": auth}, environ={})
    return create_app(load_project(tmp_path), settings)


@dataclass
class Env:
    client: TestClient
    auth: KeyService
    keys: dict[tuple[str, str], str]  # (tenant, role) -> key

    def h(self, tenant: str, role: str = "admin") -> dict[str, str]:
        return {"X-Api-Key": self.keys[(tenant, role)]}

    def new_key(self, tenant: str, role: str, **kw: Any) -> dict[str, Any]:
        row: dict[str, Any] = self.client.portal.call(  # type: ignore[union-attr]
            lambda: self.auth.create_key(tenant, role, **kw))
        return row


@pytest.fixture
def env(tmp_path: Path, new_database: NewDatabase) -> Iterator[Env]:
    app = _app(tmp_path, new_database())
    with TestClient(app) as client:
        auth: KeyService = app.state.dockyard.auth
        portal = client.portal
        assert portal is not None
        keys = {}
        for tenant in ("a", "b"):
            portal.call(auth.create_tenant, tenant)
            for role in ROLES:
                keys[(tenant, role)] = portal.call(lambda t=tenant, r=role: auth.create_key(t, r))["key"]
        yield Env(client, auth, keys)


# ---- the table covers every route -----------------------------------------------------------

def test_every_route_has_an_action_class(tmp_path: Path, new_database: NewDatabase) -> None:
    app = _app(tmp_path, new_database())
    served = {(m, p) for m, p, _ in app_routes(app.routes)}
    assert served == set(ROUTE_ACTIONS), "ROUTE_ACTIONS must list exactly the served routes"
    app.router.add_api_route("/escape", lambda: None, methods=["GET"])
    with pytest.raises(RuntimeError, match="GET /escape"):
        route_table(app.routes)


# ---- 401 ------------------------------------------------------------------------------------

def _audit(env: Env, tenant: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = env.client.portal.call(  # type: ignore[union-attr]
        lambda: env.auth.audit_log.search(tenant, action="auth.failed"))
    return rows


def test_bad_credentials_get_401_and_are_audited(env: Env) -> None:
    c = env.client
    expired = env.new_key("a", "admin", expires_in_days=1e-9)
    revoked = env.new_key("a", "viewer")
    assert c.delete(f"/admin/keys/{revoked['key_id']}", headers=env.h("a")).status_code == 204
    unknown = "dk_0123abcd_" + "x" * 43
    cases = {
        "missing": {},
        "malformed": {"X-Api-Key": "not-a-key"},
        "malformed-bearer": {"Authorization": "Basic Zm9vOmJhcg=="},
        "unknown": {"Authorization": f"Bearer {unknown}"},
        "expired": {"X-Api-Key": expired["key"]},
        "revoked": {"X-Api-Key": revoked["key"]},
    }
    for name, headers in cases.items():
        resp = c.post("/threads/search", json={}, headers=headers)
        assert resp.status_code == 401, name
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert resp.json()["code"] == "unauthorized"
        for secret in headers.values():
            assert secret.split(" ")[-1] not in resp.text, name
    reasons = {r["detail"]["reason"] for r in _audit(env, "a")}
    assert {"expired", "revoked"} <= reasons
    assert {"missing", "malformed", "unknown"} <= {r["detail"]["reason"] for r in _audit(env, "")}
    # the tenant's admin sees failures with its own keys through the admin API
    seen = c.get("/admin/audit", params={"action": "auth.failed"}, headers=env.h("a")).json()
    assert {r["resource_id"] for r in seen} >= {expired["key_id"], revoked["key_id"]}
    # repeated failures are rate-limited: one more audit row at most
    before = len(_audit(env, ""))
    for _ in range(5):
        assert c.get("/info").status_code == 401
    assert len(_audit(env, "")) <= before + 1


def test_public_routes_and_auth_off(env: Env, tmp_path: Path, new_database: NewDatabase) -> None:
    assert env.client.get("/ok").status_code == 200
    assert env.client.get("/openapi.json").status_code == 200
    assert env.client.get("/info").status_code == 401
    app = _app(tmp_path / "off", new_database(), auth="none") if (tmp_path / "off").mkdir() is None \
        else None
    with TestClient(app) as off:
        assert off.get("/info").status_code == 200
        assert off.post("/threads", json={}).status_code == 200


def test_bearer_and_key_header_both_work_and_cache_forgets_revoked(env: Env) -> None:
    row = env.new_key("a", "viewer")
    for headers in ({"X-Api-Key": row["key"]}, {"Authorization": f"Bearer {row['key']}"}):
        assert env.client.get("/info", headers=headers).status_code == 200
    assert env.client.delete(f"/admin/keys/{row['key_id']}", headers=env.h("a")).status_code == 204
    assert env.client.get("/info", headers={"X-Api-Key": row["key"]}).status_code == 401
    listed = env.client.get("/admin/keys", headers=env.h("a")).json()
    assert all("key" not in k and "hash" not in k for k in listed)
    assert any(k["key_id"] == row["key_id"] and k["revoked_at"] for k in listed)
    # another tenant's admin cannot revoke it, nor see it
    assert env.client.delete(f"/admin/keys/{row['key_id']}", headers=env.h("b")).status_code == 404
    assert row["key_id"] not in {k["key_id"] for k in
                                 env.client.get("/admin/keys", headers=env.h("b")).json()}


# ---- roles x actions --------------------------------------------------------------------------

def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "x"), path)


def test_role_matrix_every_route(env: Env) -> None:
    """For every route and role the table forbids: 403 (before the body is even looked at)."""
    ids = {"thread_id": "00000000-0000-0000-0000-000000000001", "run_id": "r", "cron_id": "c",
           "assistant_id": "g", "key_id": "k", "checkpoint_id": "c", "namespace": "n",
           "revision_id": "r"}
    checked = 0
    for (method, path), cls in ROUTE_ACTIONS.items():
        if method == "WEBSOCKET" or cls == PUBLIC:
            continue
        for role in ROLES:
            if route_allows(role, cls):
                continue
            resp = env.client.request(method, _fill(path, ids), json={},
                                      headers=env.h("a", role))
            assert resp.status_code == 403, (method, path, role, resp.text)
            assert resp.json()["code"] == "forbidden"
            checked += 1
    assert checked > 50


def test_refused_actions_are_audited(env: Env) -> None:
    c = env.client
    thread = c.post("/threads", json={}, headers=env.h("a", "developer")).json()["thread_id"]
    url = f"/threads/{thread}/runs/wait"
    body = {"assistant_id": "g", "input": {}}
    # route level (a viewer creating an assistant) and body level (a viewer starting a run)
    assert c.post("/assistants", json={"graph_id": "g"},
                  headers=env.h("a", "viewer")).status_code == 403
    for _ in range(3):  # repeats are rate-limited to one row
        assert c.post(url, json=body, headers=env.h("a", "viewer")).status_code == 403
    rows: list[dict[str, Any]] = env.client.portal.call(  # type: ignore[union-attr]
        lambda: env.auth.audit_log.search("a", action="auth.forbidden"))
    assert sorted(r["resource_id"] for r in rows) == sorted(["/assistants", url])
    assert {r["detail"]["role"] for r in rows} == {"viewer"}
    assert all(r["outcome"] == "refused" and r["actor"].startswith("dk_") for r in rows)


def test_role_examples(env: Env) -> None:
    c = env.client
    thread = c.post("/threads", json={}, headers=env.h("a", "developer")).json()["thread_id"]
    run_body = {"assistant_id": "g", "input": {}}
    resume = {"assistant_id": "g", "command": {"resume": "yes"}}
    url = f"/threads/{thread}/runs/wait"
    assert c.post(url, json=run_body, headers=env.h("a", "viewer")).status_code == 403
    assert c.post(url, json=run_body, headers=env.h("a", "approver")).status_code == 403
    assert c.post(url, json=resume, headers=env.h("a", "approver")).status_code != 403
    assert c.post("/assistants", json={"graph_id": "g"},
                  headers=env.h("a", "approver")).status_code == 403
    assert c.post(url, json=run_body, headers=env.h("a", "developer")).status_code == 200
    assert c.post("/runs/cancel", json={"thread_id": thread},
                  headers=env.h("a", "operator")).status_code == 204
    assert c.post("/admin/keys", json={"role": "viewer"},
                  headers=env.h("a", "developer")).status_code == 403
    made = c.post("/admin/keys", json={"role": "viewer"}, headers=env.h("a"))
    assert made.status_code == 201 and made.json()["key"].startswith("dk_")
    cmd = {"id": 1, "method": "run.start", "params": {"assistant_id": "g", "input": {}}}
    assert c.post(f"/threads/{thread}/commands", json=cmd,
                  headers=env.h("a", "approver")).status_code == 403
    assert run_action({"command": {"resume": 1}}, stateful=True) == "resume"
    assert run_action({"command": {"resume": 1, "goto": "x"}}, stateful=True) == "run"
    assert run_action({"command": {"resume": 1}}, stateful=False) == "run"
    # audit: the run and the key creation were recorded with the actor's key prefix
    audit = c.get("/admin/audit", headers=env.h("a")).json()
    actions = {r["action"] for r in audit}
    assert {"run.create", "key.create", "run.cancel_many"} <= actions
    assert all(r["actor"].startswith("dk_") or r["actor"] in ("cli", "anonymous") for r in audit)


# ---- isolation: tenant B against tenant A's resources, on every route ------------------------

EMPTY = "empty"      # 200 with nothing of A's in it
NOT_FOUND = "404"
CREATES = "creates"  # makes a resource of B's own; A's are checked untouched afterwards
RPC_ERROR = "rpc"    # JSON-RPC error object (A2A): unknown assistant
IN_BAND = "in_band"  # thread protocol: errors are 200 envelopes, as the protocol defines
FORBIDDEN = "403"    # refused whatever the tenant (setting quotas is the operator's)
REFUSED = "422"      # refused before anything is stored (B's own deploys: test_revisions.py)
CONFLICT = "409"     # about B's own state (B has no deployment to roll back)

ISOLATION: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/metrics"): (EMPTY, None),
    ("GET", "/info"): (EMPTY, None),
    ("POST", "/threads/{thread_id}/commands"):
        (IN_BAND, {"id": 1, "method": "state.get", "params": {}}),
    ("POST", "/threads/{thread_id}/stream/events"): (NOT_FOUND, {"channels": ["values"]}),
    ("POST", "/assistants"): (CREATES, {"graph_id": "g"}),
    ("POST", "/assistants/search"): (EMPTY, {}),
    ("POST", "/assistants/count"): (EMPTY, {}),
    ("GET", "/assistants/{assistant_id}"): (NOT_FOUND, None),
    ("PATCH", "/assistants/{assistant_id}"): (NOT_FOUND, {"name": "stolen"}),
    ("DELETE", "/assistants/{assistant_id}"): (NOT_FOUND, None),
    ("GET", "/assistants/{assistant_id}/graph"): (NOT_FOUND, None),
    ("GET", "/assistants/{assistant_id}/schemas"): (NOT_FOUND, None),
    ("GET", "/assistants/{assistant_id}/subgraphs"): (NOT_FOUND, None),
    ("GET", "/assistants/{assistant_id}/subgraphs/{namespace}"): (NOT_FOUND, None),
    ("POST", "/assistants/{assistant_id}/versions"): (NOT_FOUND, {}),
    ("POST", "/assistants/{assistant_id}/latest"): (NOT_FOUND, {"version": 1}),
    ("POST", "/threads"): (CREATES, {}),
    ("POST", "/threads/search"): (EMPTY, {}),
    ("POST", "/threads/count"): (EMPTY, {}),
    ("POST", "/threads/prune"): (EMPTY, {"thread_ids": ["{thread_id}"]}),
    ("GET", "/threads/{thread_id}"): (NOT_FOUND, None),
    ("PATCH", "/threads/{thread_id}"): (NOT_FOUND, {"metadata": {"x": 1}}),
    ("DELETE", "/threads/{thread_id}"): (NOT_FOUND, None),
    ("POST", "/threads/{thread_id}/copy"): (NOT_FOUND, None),
    ("GET", "/threads/{thread_id}/state"): (NOT_FOUND, None),
    ("POST", "/threads/{thread_id}/state"): (NOT_FOUND, {"values": {"steps": ["x"]}}),
    ("GET", "/threads/{thread_id}/stream"): (NOT_FOUND, None),
    ("POST", "/threads/{thread_id}/state/checkpoint"):
        (NOT_FOUND, {"checkpoint": {"checkpoint_id": "{checkpoint_id}"}}),
    ("GET", "/threads/{thread_id}/state/{checkpoint_id}"): (NOT_FOUND, None),
    ("POST", "/threads/{thread_id}/history"): (NOT_FOUND, {}),
    ("GET", "/threads/{thread_id}/history"): (NOT_FOUND, None),
    ("POST", "/threads/{thread_id}/runs/crons"):
        (NOT_FOUND, {"assistant_id": "g", "schedule": "0 0 1 1 *"}),
    ("POST", "/runs/crons"): (CREATES, {"assistant_id": "g", "schedule": "0 0 1 1 *"}),
    ("POST", "/runs/crons/search"): (EMPTY, {}),
    ("POST", "/runs/crons/count"): (EMPTY, {}),
    ("GET", "/runs/crons/{cron_id}"): (NOT_FOUND, None),
    ("PATCH", "/runs/crons/{cron_id}"): (NOT_FOUND, {"enabled": False}),
    ("DELETE", "/runs/crons/{cron_id}"): (NOT_FOUND, None),
    ("POST", "/threads/{thread_id}/runs"): (NOT_FOUND, {"assistant_id": "g", "input": {}}),
    ("POST", "/threads/{thread_id}/runs/stream"): (NOT_FOUND, {"assistant_id": "g", "input": {}}),
    ("POST", "/threads/{thread_id}/runs/wait"): (NOT_FOUND, {"assistant_id": "g", "input": {}}),
    ("GET", "/threads/{thread_id}/runs"): (NOT_FOUND, None),
    ("GET", "/threads/{thread_id}/runs/{run_id}"): (NOT_FOUND, None),
    ("DELETE", "/threads/{thread_id}/runs/{run_id}"): (NOT_FOUND, None),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel"): (NOT_FOUND, None),
    ("GET", "/threads/{thread_id}/runs/{run_id}/join"): (NOT_FOUND, None),
    ("GET", "/threads/{thread_id}/runs/{run_id}/stream"): (NOT_FOUND, None),
    ("POST", "/runs"): (CREATES, {"assistant_id": "g", "input": {}}),
    ("POST", "/runs/stream"): (CREATES, {"assistant_id": "g", "input": {}}),
    ("POST", "/runs/wait"): (CREATES, {"assistant_id": "g", "input": {}}),
    ("POST", "/runs/batch"): (CREATES, [{"assistant_id": "g", "input": {}}]),
    ("POST", "/runs/cancel"): (NOT_FOUND, {"run_ids": ["{run_id}"]}),
    ("PUT", "/store/items"): (CREATES, {"namespace": ["ns"], "key": "k2", "value": {"b": 1}}),
    ("GET", "/store/items"): (EMPTY, {"?": {"namespace": "ns", "key": "k"}}),
    ("DELETE", "/store/items"): (EMPTY, {"namespace": ["ns"], "key": "k"}),
    ("POST", "/store/items/search"): (EMPTY, {"namespace_prefix": ["ns"]}),
    ("POST", "/store/namespaces"): (EMPTY, {}),
    ("GET", "/runs/{run_id}/webhooks"): (EMPTY, None),
    ("GET", "/threads/{thread_id}/runs/{run_id}/trace"): (NOT_FOUND, None),
    ("GET", "/threads/{thread_id}/runs/{run_id}/trace/spans/{seq}"): (NOT_FOUND, None),
    ("GET", "/queue"): (EMPTY, None),
    ("GET", "/webhooks/deliveries"): (EMPTY, None),
    ("POST", "/mcp"): (EMPTY, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ("POST", "/a2a/{assistant_id}"): (RPC_ERROR, {
        "jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": "{run_id}"}}),
    ("GET", "/.well-known/agent-card.json"): (NOT_FOUND, {"?": {"assistant_id": "{assistant_id}"}}),
    ("GET", "/.well-known/agent.json"): (NOT_FOUND, {"?": {"assistant_id": "{assistant_id}"}}),
    ("POST", "/admin/keys"): (CREATES, {"role": "viewer"}),
    ("GET", "/admin/keys"): (EMPTY, None),
    ("DELETE", "/admin/keys/{key_id}"): (NOT_FOUND, None),
    ("GET", "/admin/audit"): (EMPTY, None),
    ("GET", "/admin/quotas"): (EMPTY, None),
    ("PUT", "/admin/tenants/{tenant_id}/quotas"): (FORBIDDEN, {"max_concurrent_runs": 1}),
    ("POST", "/revisions"): (REFUSED, {}),
    ("GET", "/revisions"): (EMPTY, None),
    ("GET", "/revisions/{revision_id}"): (NOT_FOUND, None),
    ("GET", "/revisions/{revision_id}/archive"): (NOT_FOUND, None),
    ("PUT", "/revisions/{revision_id}/env"): (NOT_FOUND, {"env": {"X": "stolen"}}),
    ("GET", "/revisions/{revision_id}/env"): (NOT_FOUND, None),
    ("GET", "/deployment"): (EMPTY, None),
    ("GET", "/deployment/stats"): (EMPTY, None),
    ("POST", "/deployment/promote"): (NOT_FOUND, {"revision_id": "{revision_id}"}),
    ("POST", "/deployment/rollback"): (CONFLICT, {}),
    ("POST", "/deployment/threads/migrate"):
        (NOT_FOUND, {"to": "base", "thread_ids": ["{thread_id}"]}),
}


def _subst(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _fill(value, ids)
    if isinstance(value, list):
        return [_subst(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _subst(v, ids) for k, v in value.items()}
    return value


def test_isolation_matrix(env: Env, tmp_path: Path) -> None:
    c, ha = env.client, env.h("a")
    # tenant A's resources
    assistant = c.post("/assistants", json={"graph_id": "g", "name": "secret-agent"}, headers=ha)
    assistant_id = assistant.json()["assistant_id"]
    thread_id = c.post("/threads", json={}, headers=ha).json()["thread_id"]
    waited = c.post(f"/threads/{thread_id}/runs/wait", json={"assistant_id": assistant_id,
                                                             "input": {}}, headers=ha)
    assert waited.status_code == 200, waited.text
    run_id = waited.headers["Content-Location"].rsplit("/", 1)[-1]
    checkpoint_id = c.get(f"/threads/{thread_id}/state", headers=ha).json()["checkpoint"][
        "checkpoint_id"]
    cron = c.post(f"/threads/{thread_id}/runs/crons",
                  json={"assistant_id": assistant_id, "schedule": "0 0 1 1 *"}, headers=ha)
    assert cron.status_code == 200, cron.text
    assert c.put("/store/items", json={"namespace": ["ns"], "key": "k", "value": {"a": 1}},
                 headers=ha).status_code == 204
    key_id = env.new_key("a", "viewer")["key_id"]
    project = tmp_path / "deployed"
    project.mkdir()
    (project / "g.py").write_text(GRAPHS)
    (project / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    revision = c.post("/revisions", content=build_archive(project),
                      headers={**ha, "Content-Type": "application/gzip"})
    assert revision.status_code == 201, revision.text
    # A serves that revision: B must see nothing of A's deployment
    promoted = c.post("/deployment/promote", json={"revision_id": revision.json()["revision_id"]},
                      headers=ha)
    assert promoted.status_code == 200, promoted.text
    ids = {"thread_id": thread_id, "run_id": run_id, "assistant_id": assistant_id,
           "cron_id": cron.json()["cron_id"], "checkpoint_id": checkpoint_id,
           "namespace": "x", "key_id": key_id, "revision_id": revision.json()["revision_id"],
           "seq": "0", "tenant_id": "a"}
    secrets = [thread_id, run_id, assistant_id, ids["cron_id"], key_id, "secret-agent",
               ids["revision_id"]]

    served = {(m, p) for (m, p), cls in ROUTE_ACTIONS.items() if cls != PUBLIC and m != "WEBSOCKET"}
    assert served == set(ISOLATION), "every non-public route needs an isolation expectation"
    hb = env.h("b")
    for (method, path), (expect, body) in ISOLATION.items():
        kw: dict[str, Any] = {"headers": hb}
        body = _subst(body, ids)
        if isinstance(body, dict) and "?" in body:  # query parameters
            kw["params"] = body["?"]
        elif body is not None:
            kw["json"] = body
        resp = c.request(method, _fill(path, ids), **kw)
        where = (method, path, resp.status_code, resp.text[:300])
        if expect == NOT_FOUND:
            assert resp.status_code == 404, where
        elif expect == REFUSED:
            assert resp.status_code == 422, where
        elif expect == CONFLICT:
            assert resp.status_code == 409, where
        elif expect == FORBIDDEN:
            assert resp.status_code == 403, where
        elif expect == IN_BAND:
            answer = resp.json()
            assert answer["type"] == "error" and "not found" in answer["message"], where
        elif expect == RPC_ERROR:
            assert resp.status_code == 200, where
            assert resp.json()["error"]["data"]["code"].endswith("not_found"), where
        elif expect == CREATES:
            assert resp.status_code in (200, 201, 204), where
        else:
            assert resp.status_code in (200, 202, 204), where
        if expect == EMPTY and path not in ("/metrics", "/info"):
            for secret in secrets:
                assert secret not in resp.text, (where, secret)
            if path.endswith(("/deliveries", "/webhooks")):
                assert resp.json() == [], where
            if path == "/store/items/search":  # B's own k2 only, never A's k
                assert [i["key"] for i in resp.json()["items"]] == ["k2"], where
            if path.endswith("/count"):  # B counts exactly what B finds
                found = c.post(path.replace("/count", "/search"), json={"limit": 1000}, headers=hb)
                assert resp.json() == len(found.json()), where

    # A's resources are all still there, unchanged
    assert "x" not in c.get(f"/threads/{thread_id}", headers=ha).json()["metadata"]
    assert c.get(f"/assistants/{assistant_id}", headers=ha).json()["name"] == "secret-agent"
    assert c.get(f"/runs/crons/{ids['cron_id']}", headers=ha).json()["enabled"] is True
    assert c.get("/store/items", params={"namespace": "ns", "key": "k"},
                 headers=ha).json()["value"] == {"a": 1}
    assert c.get(f"/threads/{thread_id}/runs/{run_id}", headers=ha).status_code == 200
    # and B's graph runs see B's store, not A's
    assert c.get("/store/items", params={"namespace": "ns", "key": "k2"},
                 headers=ha).json() is None


def test_websocket_authenticates_on_handshake(env: Env) -> None:
    from starlette.websockets import WebSocketDisconnect

    thread_id = env.client.post("/threads", json={}, headers=env.h("a")).json()["thread_id"]
    path = f"/threads/{thread_id}/stream/events"
    with env.client.websocket_connect(path) as ws, pytest.raises(WebSocketDisconnect) as err:
        ws.receive_text()
    assert err.value.code == 4401
    with env.client.websocket_connect(path, headers=env.h("b", "viewer")) as ws:
        ws.send_text(json.dumps({"id": 1, "method": "subscription.subscribe",
                                 "params": {"channels": ["values"]}}))
        assert json.loads(ws.receive_text())["type"] == "success"
        with pytest.raises(WebSocketDisconnect) as err:  # A's thread: not found for B
            ws.receive_text()
            ws.receive_text()
        assert err.value.code == 4404
    with env.client.websocket_connect(path, headers=env.h("a", "viewer")) as ws:
        ws.send_text(json.dumps({"id": 2, "method": "run.start",
                                 "params": {"assistant_id": "g", "input": {}}}))
        answer = json.loads(ws.receive_text())
        assert answer["type"] == "error" and answer["error"] == "forbidden", answer


async def test_revocation_reaches_other_processes_within_a_second(db: Any) -> None:
    """Two KeyServices on one database stand for two processes: both cache a verified key; a
    revocation through one stops the key on the other at its next revocation check."""
    from dockyard.services.auth import AuthFailure

    a, b = KeyService(db, mode="keys"), KeyService(db, mode="keys")
    b.REVOCATION_CHECK_SECONDS = 0.0  # check on every request (the default is once a second)
    made = await a.create_key("default", "viewer")
    assert (await a.authenticate(made["key"])).role == "viewer"
    assert (await b.authenticate(made["key"])).role == "viewer"  # cached on b now
    other = await a.create_key("default", "viewer")
    await b.authenticate(other["key"])
    await a.revoke_key(made["key_id"])
    with pytest.raises(AuthFailure, match="revoked"):
        await a.authenticate(made["key"])
    with pytest.raises(AuthFailure, match="revoked"):
        await b.authenticate(made["key"])
    assert (await b.authenticate(other["key"])).role == "viewer"  # the others still work
