"""Per-tenant quotas: runs in flight, runs per minute, stored bytes → 429 with Retry-After;
set by the operator (admins of `default`, or the CLI); held across two API processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from tests.conftest import ONE_NODE_GRAPH as GRAPHS
from tests.conftest import NewDatabase


def _app(tmp_path: Path, database_url: str, **settings: Any) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "g.py").write_text(GRAPHS)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    s = Settings.from_env({"data_dir": str(tmp_path / "data"), "database_url": database_url,
                           "auth": "keys", **settings}, environ={})
    return create_app(load_project(tmp_path), s)


class Env:
    def __init__(self, client: TestClient) -> None:
        self.c = client
        self.auth = client.app.state.dockyard.auth  # type: ignore[attr-defined]
        call = client.portal.call  # type: ignore[union-attr]
        call(self.auth.create_tenant, "a")
        call(self.auth.create_tenant, "b")
        self.keys = {t: call(lambda t=t: self.auth.create_key(t, "admin"))["key"]
                     for t in ("default", "a", "b")}

    def h(self, tenant: str) -> dict[str, str]:
        return {"X-Api-Key": self.keys[tenant]}

    def set(self, tenant: str, **quotas: Any) -> Any:
        return self.c.put(f"/admin/tenants/{tenant}/quotas", json=quotas, headers=self.h("default"))

    def run(self, tenant: str) -> Any:
        # after_seconds keeps the run pending: it stays "in flight" for the test
        return self.c.post("/runs", json={"assistant_id": "g", "input": {}, "after_seconds": 600},
                           headers=self.h(tenant))


@pytest.fixture
def env(tmp_path: Path, new_database: NewDatabase) -> Iterator[Env]:
    with TestClient(_app(tmp_path, new_database())) as client:
        yield Env(client)


def _not_at_minute_end() -> None:
    if datetime.now(UTC).second >= 56:  # the per-minute window must not roll over mid-test
        time.sleep(61 - datetime.now(UTC).second)


def test_concurrent_runs_quota(env: Env) -> None:
    assert env.c.put("/admin/tenants/a/quotas", json={"max_concurrent_runs": 9},
                     headers=env.h("a")).status_code == 403  # a tenant cannot raise its own
    assert env.set("ghost", max_concurrent_runs=1).status_code == 404
    assert env.set("a", max_concurrent_runs=2).json()["limits"]["max_concurrent_runs"] == 2
    assert [env.run("a").status_code for _ in range(2)] == [200, 200]
    over = env.run("a")
    assert over.status_code == 429, over.text
    assert over.json()["code"] == "quota_exceeded"
    assert "max_concurrent_runs=2" in over.json()["detail"]
    assert int(over.headers["Retry-After"]) > 0
    assert env.run("b").status_code == 200  # another tenant is not affected
    usage = env.c.get("/admin/quotas", headers=env.h("a")).json()
    assert usage["usage"]["runs_in_flight"] == 2 and usage["limits"]["max_concurrent_runs"] == 2
    # back to the server default (unlimited)
    assert env.set("a", max_concurrent_runs=None).json()["limits"]["max_concurrent_runs"] == 0
    assert env.run("a").status_code == 200
    audit = env.c.get("/admin/audit", params={"action": "quota.set"}, headers=env.h("default"))
    assert len(audit.json()) == 2


def test_runs_per_minute_quota(env: Env) -> None:
    _not_at_minute_end()
    env.set("a", runs_per_minute=3)
    assert [env.run("a").status_code for _ in range(3)] == [200, 200, 200]
    over = env.run("a")
    assert over.status_code == 429 and "runs_per_minute=3" in over.json()["detail"]
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    # the thread API's runs count too
    thread = env.c.post("/threads", json={}, headers=env.h("a")).json()
    assert env.c.post(f"/threads/{thread['thread_id']}/runs", json={"assistant_id": "g"},
                      headers=env.h("a")).status_code == 429
    assert env.c.get("/admin/quotas", headers=env.h("a")).json()["usage"]["runs_this_minute"] == 3


def test_stored_bytes_quota(env: Env) -> None:
    env.set("a", max_stored_bytes=200)
    put = {"namespace": ["n"], "key": "k1", "value": {"blob": "x" * 300}}
    assert env.c.put("/store/items", json=put, headers=env.h("a")).status_code == 204
    over = env.c.put("/store/items", json={**put, "key": "k2"}, headers=env.h("a"))
    assert over.status_code == 429 and "max_stored_bytes" in over.json()["detail"]
    assert "Retry-After" in over.headers
    assert env.run("a").status_code == 429  # runs grow thread states: refused too
    assert env.c.get("/admin/quotas", headers=env.h("a")).json()["usage"]["stored_bytes"] > 300
    # deleting data frees the quota (usage is recounted after this process's writes)
    assert env.c.request("DELETE", "/store/items", json={"namespace": ["n"], "key": "k1"},
                         headers=env.h("a")).status_code == 204
    env.c.app.state.dockyard.quotas.forget_usage("a")  # type: ignore[attr-defined]
    assert env.c.put("/store/items", json={**put, "key": "k2"}, headers=env.h("a")).status_code == 204


def test_quota_holds_across_two_api_processes(tmp_path: Path, new_database: NewDatabase) -> None:
    """Two apps on one database (two API replicas) race to create runs: exactly the quota
    gets through."""
    url = new_database()
    with ExitStack() as stack:
        first = stack.enter_context(TestClient(_app(tmp_path / "1", url)))
        env = Env(first)
        second = stack.enter_context(TestClient(_app(tmp_path / "2", url)))
        env.set("a", max_concurrent_runs=5)
        body = {"assistant_id": "g", "input": {}, "after_seconds": 600}

        def create(i: int) -> int:
            client = first if i % 2 else second
            return client.post("/runs", json=body, headers=env.h("a")).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(create, range(16)))
        assert codes.count(200) == 5 and codes.count(429) == 11, codes
