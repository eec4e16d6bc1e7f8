"""Creating a run on an existing thread: on PostgreSQL, once the assistant has been read, one
statement (``RunService._create_at_once``) writes it when nothing the reads would find can
change the outcome; every other case takes the full path (reads, then the write) and answers
as it did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from tests.conftest import ONE_NODE_GRAPH, TEST_DATABASE, NewDatabase

postgres_only = pytest.mark.skipif(TEST_DATABASE != "postgres",
                                   reason="PostgreSQL only (DOCKYARD_TEST_DATABASE=postgres)")


class Env:
    def __init__(self, client: TestClient) -> None:
        self.c = client
        self.dockyard = client.app.state.dockyard  # type: ignore[attr-defined]
        self.reads = 0  # creations that took the full path (they read first)
        storage = self.dockyard.runs.deps.storage
        fetch_batch = storage.fetch_batch

        async def counted(statements: Any) -> Any:
            self.reads += 1
            return await fetch_batch(statements)

        storage.fetch_batch = counted

    def call(self, fn: Any, *args: Any) -> Any:
        return self.c.portal.call(fn, *args)  # type: ignore[union-attr]

    def sql(self, sql: str, params: Any = ()) -> Any:
        return self.call(self.dockyard.runs.deps.storage.fetchall, sql, params)

    def thread(self) -> str:
        r = self.c.post("/threads", json={"metadata": {"owner": "me"}})
        assert r.status_code == 200, r.text
        return str(r.json()["thread_id"])

    def run(self, thread_id: str, **body: Any) -> Any:
        return self.c.post(f"/threads/{thread_id}/runs",
                           json={"assistant_id": "g", "input": {}, **body})


@pytest.fixture
def env(tmp_path: Path, new_database: NewDatabase) -> Iterator[Env]:
    (tmp_path / "g.py").write_text(ONE_NODE_GRAPH)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    settings = Settings.from_env({"data_dir": str(tmp_path / "data"),
                                  "database_url": new_database()}, environ={})
    with TestClient(create_app(load_project(tmp_path), settings)) as client:
        yield Env(client)


def test_a_run_is_created_and_runs_on_either_path(env: Env) -> None:
    """The first creation reads; on PostgreSQL the next ones on the same assistant do not, and
    leave the same rows: the run (the assistant's version, its kwargs), the thread busy then
    done, its metadata naming its graph and assistant beside its own keys, the worker woken."""
    first, second = env.thread(), env.thread()
    results = []
    for tid in (first, second):
        r = env.c.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "g", "input": {},
                                                           "metadata": {"n": tid}})
        assert r.status_code == 200, r.text
        assert r.json() == {"steps": ["s1"]}
        runs = env.c.get(f"/threads/{tid}/runs").json()
        assert len(runs) == 1 and runs[0]["status"] == "success"
        thread = env.c.get(f"/threads/{tid}").json()
        assert thread["status"] == "idle" and thread["values"] == {"steps": ["s1"]}
        results.append((runs[0], thread))
    assert env.reads == (1 if TEST_DATABASE == "postgres" else 2)
    (run1, thread1), (run2, thread2) = results
    for key in ("assistant_id", "assistant_version", "kwargs", "multitask_strategy", "status"):
        assert run1[key] == run2[key], key
    assert run2["metadata"] == {"n": second}
    assert thread1["metadata"] == thread2["metadata"]
    assert thread2["metadata"]["owner"] == "me" and thread2["metadata"]["graph_id"] == "g"
    assert thread2["metadata"]["assistant_id"] == run2["assistant_id"]
    pins = env.sql("SELECT revision_id FROM threads WHERE thread_id IN (?, ?)", (first, second))
    assert len({p["revision_id"] for p in pins}) == 1  # pinned alike (the base, or not at all)


@postgres_only
def test_what_the_statement_does_not_know_takes_the_full_path(env: Env) -> None:
    """A newer assistant version, a missing thread, a rejected second run, a thread pinned to
    a revision and a tenant with a deployment: the one statement writes nothing, and the full
    path answers as before."""
    tid = env.thread()
    assert env.run(tid, after_seconds=600).status_code == 200
    assert env.reads == 1
    assert env.run(tid, after_seconds=600).status_code == 200  # enqueued behind it
    assert env.reads == 1

    # The assistant changed since it was read: the run records its new version.
    assistant = env.c.post("/assistants/search", json={"graph_id": "g"}).json()[0]
    r = env.c.patch(f"/assistants/{assistant['assistant_id']}", json={"config": {"x": 1}})
    assert r.status_code == 200, r.text
    run = env.run(env.thread(), after_seconds=600).json()
    assert run["assistant_version"] == r.json()["version"] == 2
    assert env.reads == 2

    # No such thread: 404 as always; created when asked to.
    missing = "018f0000-0000-7000-8000-000000000000"
    r = env.run(missing)
    assert r.status_code == 404 and r.json()["code"] == "thread_not_found"
    assert env.run(missing, if_not_exists="create", after_seconds=600).status_code == 200

    # Reject: the thread is busy.
    r = env.run(tid, multitask_strategy="reject")
    assert r.status_code == 409 and r.json()["code"] == "thread_busy"

    # A thread pinned to a revision that does not exist: routing refuses it.
    pinned = env.thread()
    env.sql("UPDATE threads SET revision_id = 'rev-gone' WHERE thread_id = ? RETURNING 1",
            (pinned,))
    r = env.run(pinned)
    assert r.status_code == 409 and r.json()["code"] == "revision_mismatch", r.text
    reads = env.reads

    # A deployment appeared for the tenant (written by another API process, say): the
    # statement sees it, and the run is routed by the full path.
    env.sql("INSERT INTO deployments (tenant_id, version, updated_at)"
            " VALUES ('default', 1, '') RETURNING 1")
    assert env.run(env.thread(), after_seconds=600).status_code == 200
    assert env.reads == reads + 1


def test_a_stateless_run_writes_its_thread_busy_with_the_run(env: Env) -> None:
    """A stateless run's thread is inserted together with the run (one statement on
    PostgreSQL, which once the assistant has been read needs no read either): busy from the
    start, naming its graph and assistant, pinned like a thread of a stateful run, and the
    run finishes on it like any other."""
    threads = []
    for _ in range(2):
        r = env.c.post("/runs", json={"assistant_id": "g", "input": {}, "after_seconds": 600,
                                      "on_completion": "keep"})
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["kwargs"]["on_completion"] == "keep"
        thread = env.c.get(f"/threads/{run['thread_id']}").json()
        assert thread["status"] == "busy"
        assert thread["metadata"] == {"graph_id": "g", "assistant_id": run["assistant_id"]}
        assert [x["run_id"] for x in env.c.get(f"/threads/{run['thread_id']}/runs").json()] \
            == [run["run_id"]]
        threads.append(run["thread_id"])
    assert env.reads == (1 if TEST_DATABASE == "postgres" else 2)
    pins = env.sql("SELECT revision_id FROM threads WHERE thread_id IN (?, ?)", tuple(threads))
    assert len({p["revision_id"] for p in pins}) == 1
    r = env.c.post("/runs/wait", json={"assistant_id": "g", "input": {},
                                       "on_completion": "keep"})
    assert r.status_code == 200 and r.json() == {"steps": ["s1"]}, r.text
    done = env.c.get(f"/threads/{r.headers['Content-Location'].split('/')[2]}").json()
    assert done["status"] == "idle" and done["values"] == {"steps": ["s1"]}
    # What a stateless run may not ask for is refused as before (by the full path).
    r = env.c.post("/runs", json={"assistant_id": "g", "input": {}, "checkpoint_id": "x"})
    assert r.status_code == 422 and "needs a thread" in r.text
    # A deployment made since: the statement inserts nothing; the full path routes the run.
    if TEST_DATABASE == "postgres":
        reads = env.reads
        env.sql("INSERT INTO deployments (tenant_id, version, updated_at)"
                " VALUES ('default', 1, '') RETURNING 1")
        r = env.c.post("/runs", json={"assistant_id": "g", "input": {}, "after_seconds": 600})
        assert r.status_code == 200 and env.reads == reads + 1
