"""Fair share between tenants, priorities, concurrency caps and backpressure (429)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from dockyard.services.ids import new_id
from dockyard.storage.base import Storage
from dockyard.storage.queue import RUN_THREAD_CHECKPOINTED, RunQueue
from tests.conftest import TEST_DATABASE


async def _enqueue(queue: RunQueue, tenant: str, *, assistant: str | None = None,
                   priority: int = 0, thread_id: str | None = None) -> str:
    run_id = new_id()
    await queue.insert(tenant, {
        "run_id": run_id, "thread_id": thread_id or new_id(), "assistant_id": assistant or str(uuid.uuid4()),
        "assistant_version": 1, "graph_id": "g", "metadata": {}, "kwargs": {},
        "multitask_strategy": "enqueue", "priority": priority,
    })
    return run_id


async def test_a_burst_of_one_tenant_does_not_starve_another(db: Storage) -> None:
    queue = RunQueue(db)
    for _ in range(50):
        await _enqueue(queue, "tenant-a")
    late_b = [await _enqueue(queue, "tenant-b") for _ in range(5)]
    served: list[str] = []
    for _ in range(10):
        run = await queue.claim("w", 30)
        assert run is not None
        served.append(run["tenant_id"])
    # Round-robin between tenants with pending runs: B's five runs are all among the first ten
    # claims even though A queued fifty runs before them.
    assert served.count("tenant-b") == 5
    assert served[:2] in (["tenant-a", "tenant-b"], ["tenant-b", "tenant-a"])
    claimed_b = {r["run_id"] for r in await queue.active("tenant-b", "running")}
    assert claimed_b == set(late_b)


async def test_priority_within_a_tenant(db: Storage) -> None:
    queue = RunQueue(db)
    low = await _enqueue(queue, "t", priority=0)
    high = await _enqueue(queue, "t", priority=10)
    first = await queue.claim("w", 30)
    second = await queue.claim("w", 30)
    assert first is not None and second is not None
    assert [first["run_id"], second["run_id"]] == [high, low]


async def test_tenant_and_assistant_caps(db: Storage) -> None:
    queue = RunQueue(db)
    for _ in range(3):
        await _enqueue(queue, "capped")
    other = await _enqueue(queue, "free")
    got = [await queue.claim("w", 30, tenant_limit=2) for _ in range(4)]
    tenants = [r["tenant_id"] if r else None for r in got]
    assert tenants.count("capped") == 2  # the third waits for a free slot
    assert "free" in tenants and got[tenants.index("free")]["run_id"] == other  # type: ignore[index]
    assert got[-1] is None

    shared = str(uuid.uuid4())
    for _ in range(2):
        await _enqueue(queue, "t2", assistant=shared)
    first = await queue.claim("w", 30, tenant_limit=2, assistant_limit=1)
    assert first is not None and first["assistant_id"] == shared
    # The other run of `shared` waits; "capped" is still at its tenant cap.
    assert await queue.claim("w", 30, tenant_limit=2, assistant_limit=1) is None


GRAPH = """
from typing import TypedDict
from langgraph.graph import StateGraph, START, END
class S(TypedDict, total=False):
    n: int
b = StateGraph(S)
b.add_node("inc", lambda s: {"n": s.get("n", 0) + 1})
b.add_edge(START, "inc"); b.add_edge("inc", END)
graph = b.compile()
"""


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GRAPH)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    settings = Settings.from_env({"data_dir": str(tmp_path / "d"), "max_queue_depth": 2},
                                 environ={})
    app = create_app(load_project(tmp_path), settings)
    with TestClient(app) as client:
        dockyard: Any = app.state.dockyard
        client.portal.call(dockyard.pool.stop, 0)  # keep runs pending
        body = {"assistant_id": "g", "input": {"n": 0}, "after_seconds": 60}
        assert client.post("/runs", json=body).status_code == 200
        assert client.post("/runs", json=body).status_code == 200
        full = client.post("/runs", json=body)
        assert full.status_code == 429
        assert full.headers["Retry-After"] == "5"
        assert full.json()["code"] == "queue_full"


@pytest.mark.skipif(TEST_DATABASE != "postgres",
                    reason="PostgreSQL's one-statement claim (DOCKYARD_TEST_DATABASE=postgres)")
async def test_a_claim_tells_whether_the_runs_thread_has_a_root_checkpoint(db: Storage) -> None:
    """What lets the executor skip reading a new thread's latest checkpoint."""
    queue = RunQueue(db)
    fresh = await _enqueue(queue, "t")
    run = await queue.claim("w", 30)
    assert run is not None and run["run_id"] == fresh
    assert run[RUN_THREAD_CHECKPOINTED] is False
    insert = ("INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, checkpoint,"
              " metadata) VALUES (?, ?, ?, '{}', '{}')")
    # A subgraph's checkpoint is not the thread's root one.
    await db.execute(insert, (run["thread_id"], "sub:1", "c1"))
    await queue.finish(run["run_id"], "success", None)
    again = await _enqueue(queue, "t", thread_id=run["thread_id"])
    second = await queue.claim("w", 30)
    assert second is not None and second["run_id"] == again
    assert second[RUN_THREAD_CHECKPOINTED] is False
    await queue.finish(again, "success", None)
    await db.execute(insert, (run["thread_id"], "", "c2"))
    third = await _enqueue(queue, "t", thread_id=run["thread_id"])
    claimed = await queue.claim("w", 30)
    assert claimed is not None and claimed["run_id"] == third
    assert claimed[RUN_THREAD_CHECKPOINTED] is True
