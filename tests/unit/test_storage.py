"""SQLite storage in a tmp dir: migrations, assistant versions, thread filters, the run queue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidInput
from dockyard.services.ids import new_id
from dockyard.storage import create_storage
from dockyard.storage.base import Storage, utcnow
from dockyard.storage.queue import RunQueue, in_seconds
from dockyard.storage.resources import Assistants, Threads
from dockyard.storage.sqlite import SqliteStorage

T = "default"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Storage]:
    storage = create_storage(None, default_path=tmp_path / "dockyard.sqlite")
    await storage.open()
    await storage.migrate()
    yield storage
    await storage.close()


# ---- migrations ---------------------------------------------------------------------------
async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "db.sqlite"
    storage = create_storage(f"sqlite:///{path}", default_path=tmp_path / "unused.sqlite")
    assert isinstance(storage, SqliteStorage)
    await storage.open()
    try:
        assert await storage.migrate() == ["0001"]
        assert await storage.migrate() == []
        rows = await storage.fetchall("SELECT version FROM schema_migrations")
        assert [r["version"] for r in rows] == ["0001"]
    finally:
        await storage.close()
    # A second process (or a restart) finds everything applied and keeps the data.
    again = SqliteStorage(path)
    await again.open()
    try:
        assert await again.migrate() == []
        pragmas = {name: (await again.fetchone(f"PRAGMA {name}") or {}) for name in
                   ("journal_mode", "foreign_keys")}
        assert pragmas["journal_mode"]["journal_mode"] == "wal"
        assert pragmas["foreign_keys"]["foreign_keys"] == 1
    finally:
        await again.close()


def test_unsupported_database_urls(tmp_path: Path) -> None:
    from dockyard.errors import ConfigError

    for url in ("mysql://x", "postgresql://localhost/db"):
        with pytest.raises(ConfigError) as info:
            create_storage(url, default_path=tmp_path / "x.sqlite")
        assert "DOCKYARD_DATABASE_URL" in str(info.value)


# ---- assistants -----------------------------------------------------------------------------
def _assistant(**over: Any) -> dict[str, Any]:
    return {"assistant_id": str(uuid.uuid4()), "graph_id": "g", "name": "a", "description": None,
            "config": {"configurable": {"v": 1}}, "context": {}, "metadata": {"team": "x"},
            **over}


async def test_assistant_versions(db: Storage) -> None:
    repo = Assistants(db)
    row = await repo.insert(T, _assistant())
    aid = row["assistant_id"]
    assert row["version"] == 1
    current = await repo.get(T, aid)
    assert current is not None
    v2 = await repo.new_version(T, {**current, "config": {"configurable": {"v": 2}},
                                    "metadata": {"team": "y"}})
    assert v2["version"] == 2
    got = await repo.get(T, aid)
    assert got is not None and got["version"] == 2 and got["config"]["configurable"]["v"] == 2

    versions = await repo.versions(T, aid, metadata=None, limit=10, offset=0)
    assert [v["version"] for v in versions] == [2, 1]
    assert [v["version"] for v in await repo.versions(T, aid, metadata={"team": "x"}, limit=10,
                                                         offset=0)] == [1]
    assert [v["version"] for v in await repo.versions(T, aid, metadata=None, limit=1,
                                                         offset=1)] == [1]

    first = await repo.get_version(T, aid, 1)
    assert first is not None
    await repo.set_current(T, first, 1)
    back = await repo.get(T, aid)
    assert back is not None and back["version"] == 1 and back["config"]["configurable"]["v"] == 1
    # A new version after going back still gets the next number, not 2 again.
    v3 = await repo.new_version(T, {**back, "name": "renamed"})
    assert v3["version"] == 3
    assert await repo.get_version(T, aid, 99) is None

    assert await repo.delete(T, aid) == 1
    assert await repo.get(T, aid) is None
    # Versions go with their assistant (foreign key, ON DELETE CASCADE).
    assert await repo.versions(T, aid, metadata=None, limit=10, offset=0) == []


async def test_assistant_search(db: Storage) -> None:
    repo = Assistants(db)
    for name, graph, meta in [("alpha", "g1", {"k": 1}), ("beta", "g1", {"k": "1"}),
                              ("Gamma", "g2", {"k": True, "nested": {"a": 1, "b": 2}})]:
        await repo.insert(T, _assistant(name=name, graph_id=graph, metadata=meta))
    await repo.insert("other-tenant", _assistant(name="alpha", graph_id="g1", metadata={"k": 1}))

    async def names(**kw: Any) -> list[str]:
        return [r["name"] for r in await repo.search(T, sort_by="name", sort_order="asc", **kw)]

    assert await names() == ["Gamma", "alpha", "beta"]
    assert await names(graph_id="g1") == ["alpha", "beta"]
    assert await names(name="AMM") == ["Gamma"]  # case-insensitive substring
    # 1, "1" and true are different JSON values.
    assert await names(metadata={"k": 1}) == ["alpha"]
    assert await names(metadata={"k": "1"}) == ["beta"]
    assert await names(metadata={"k": True}) == ["Gamma"]
    assert await names(metadata={"nested": {"a": 1}}) == ["Gamma"]  # containment
    assert await names(metadata={"nested": {"a": 2}}) == []
    assert await names(limit=1, offset=1) == ["alpha"]
    assert await repo.count(T) == 3
    assert await repo.count(T, graph_id="g1", metadata={"k": 1}) == 1
    assert await repo.count("other-tenant") == 1
    with pytest.raises(InvalidInput):
        await repo.search(T, sort_by="config")
    with pytest.raises(InvalidInput):
        await repo.search(T, metadata={"a'b": 1})


# ---- threads ----------------------------------------------------------------------------------
async def test_thread_insert_update_delete(db: Storage) -> None:
    repo = Threads(db)
    tid = str(uuid.uuid4())
    row = await repo.insert(T, tid, {"owner": "ann"})
    assert row is not None and row["status"] == "idle" and row["values"] is None
    assert await repo.insert(T, tid, {}) is None  # already there
    await repo.update(T, tid, status="error", error="boom", values={"x": [1]},
                      interrupts={"t": [{"value": 1}]})
    got = await repo.get(T, tid)
    assert got is not None
    assert (got["status"], got["error"], got["values"]) == ("error", "boom", {"x": [1]})
    assert got["interrupts"] == {"t": [{"value": 1}]}
    assert got["updated_at"] >= got["created_at"]
    assert await repo.delete(T, tid) == 1
    assert await repo.get(T, tid) is None


async def test_thread_search_filters(db: Storage) -> None:
    repo = Threads(db)
    ids = []
    specs = [
        ({"user": "ann", "n": 1}, "idle", {"messages": ["hi"], "done": True}),
        ({"user": "bob", "n": 2}, "busy", {"messages": ["hi", "there"], "done": False}),
        ({"user": "ann", "n": 3, "tags": ["a", "b"]}, "interrupted", None),
    ]
    for meta, status, values in specs:
        tid = new_id()
        ids.append(tid)
        await repo.insert(T, tid, meta)
        await repo.update(T, tid, status=status, values=values)

    async def found(**kw: Any) -> list[str]:
        return [r["thread_id"] for r in await repo.search(T, sort_by="created_at",
                                                          sort_order="asc", **kw)]

    assert await found() == ids
    assert await found(metadata={"user": "ann"}) == [ids[0], ids[2]]
    assert await found(metadata={"user": "ann", "n": 3}) == [ids[2]]
    assert await found(metadata={"tags": ["a", "b"]}) == [ids[2]]
    assert await found(metadata={"tags": ["b", "a"]}) == []
    assert await found(metadata={"missing": "x"}) == []
    assert await found(metadata={"missing": None}) == []
    await repo.update(T, ids[1], metadata={"user": "bob", "n": 2, "gone": None})
    assert await found(metadata={"gone": None}) == [ids[1]]
    assert await found(values={"done": True}) == [ids[0]]
    assert await found(values={"done": False}) == [ids[1]]
    assert await found(values={"messages": ["hi"]}) == [ids[0]]
    assert await found(status="busy") == [ids[1]]
    assert await found(ids=[ids[2], ids[0]]) == [ids[0], ids[2]]
    assert await found(metadata={"user": "ann"}, status="idle") == [ids[0]]
    assert await found(limit=2, offset=1) == ids[1:]
    desc = [r["thread_id"] for r in await repo.search(T)]  # default: newest first
    assert desc == ids[::-1]
    by_status = await repo.search(T, sort_by="status", sort_order="asc")
    assert [r["status"] for r in by_status] == ["busy", "idle", "interrupted"]
    assert await repo.count(T) == 3
    assert await repo.count(T, metadata={"user": "ann"}, status="interrupted") == 1
    assert await repo.count(T, values={"done": True}) == 1
    assert await repo.search("other-tenant") == []
    with pytest.raises(InvalidInput):
        await repo.search(T, sort_by="metadata")


# ---- the run queue ----------------------------------------------------------------------------
async def _enqueue(queue: RunQueue, thread_id: str, **over: Any) -> str:
    run_id = new_id()
    await queue.insert(T, {
        "run_id": run_id, "thread_id": thread_id, "assistant_id": str(uuid.uuid4()),
        "assistant_version": 1, "graph_id": "g", "metadata": {}, "kwargs": {"input": None},
        "multitask_strategy": "enqueue", **over,
    })
    return run_id


async def test_claim_fifo_per_thread_and_one_running(db: Storage) -> None:
    queue = RunQueue(db)
    thread = new_id()
    first = await _enqueue(queue, thread)
    second = await _enqueue(queue, thread)
    claimed = await queue.claim("w1", lease_seconds=30)
    assert claimed is not None and claimed["run_id"] == first
    assert claimed["status"] == "running" and claimed["worker_id"] == "w1"
    assert claimed["attempts"] == 1 and claimed["lease_until"] > utcnow()
    # The thread already runs a run: its next one waits.
    assert await queue.claim("w2", lease_seconds=30) is None
    await queue.finish(first, "success")
    done = await queue.get(T, first)
    assert done is not None and done["status"] == "success" and done["worker_id"] is None
    nxt = await queue.claim("w2", lease_seconds=30)
    assert nxt is not None and nxt["run_id"] == second
    assert await queue.claim("w3", lease_seconds=30) is None


async def test_claim_priority_across_threads(db: Storage) -> None:
    queue = RunQueue(db)
    low = await _enqueue(queue, new_id())
    high = await _enqueue(queue, new_id(), priority=5)
    mid = await _enqueue(queue, new_id(), priority=1)
    # Priority never jumps the queue of a thread: this one waits behind `low`'s thread-mate.
    blocked_thread = new_id()
    older = await _enqueue(queue, blocked_thread)
    urgent = await _enqueue(queue, blocked_thread, priority=9)
    order = []
    while (run := await queue.claim("w", lease_seconds=30)) is not None:
        order.append(run["run_id"])
    assert order == [high, mid, low, older]
    await queue.finish(older, "success")
    last = await queue.claim("w", lease_seconds=30)
    assert last is not None and last["run_id"] == urgent


async def test_claim_respects_after_seconds(db: Storage) -> None:
    queue = RunQueue(db)
    later = await _enqueue(queue, new_id(), available_at=in_seconds(3600))
    assert await queue.claim("w", lease_seconds=30) is None
    assert await queue.next_available_at() == (await queue.get(T, later) or {})["available_at"]
    now_run = await _enqueue(queue, new_id())
    claimed = await queue.claim("w", lease_seconds=30)
    assert claimed is not None and claimed["run_id"] == now_run
    # Forge the passing of time rather than waiting for it.
    await db.execute("UPDATE runs SET available_at = ? WHERE run_id = ?",
                     (in_seconds(-1), later))
    claimed = await queue.claim("w", lease_seconds=30)
    assert claimed is not None and claimed["run_id"] == later


async def test_requeue_orphans(db: Storage) -> None:
    queue = RunQueue(db)
    stale = await _enqueue(queue, new_id())
    live = await _enqueue(queue, new_id())
    pending = await _enqueue(queue, new_id())
    for _ in range(2):
        assert await queue.claim("w", lease_seconds=30) is not None
    # A worker that died: its lease ran out (backdated, not waited for).
    await db.execute("UPDATE runs SET lease_until = ? WHERE run_id = ?", (in_seconds(-5), stale))
    assert await queue.requeue_orphans(all_running=False) == [stale]
    row = await queue.get(T, stale)
    assert row is not None
    assert (row["status"], row["worker_id"], row["lease_until"]) == ("pending", None, None)
    again = await queue.claim("w2", lease_seconds=30)
    assert again is not None and again["run_id"] == stale and again["attempts"] == 2
    # Renewing keeps a lease alive; an embedded restart requeues every running run.
    await queue.renew([live, stale], lease_seconds=60)
    assert await queue.requeue_orphans(all_running=False) == []
    assert sorted(await queue.requeue_orphans(all_running=True)) == sorted([live, stale])
    statuses = {r: (await queue.get(T, r) or {})["status"] for r in (stale, live, pending)}
    assert set(statuses.values()) == {"pending"}


async def test_set_status_and_active(db: Storage) -> None:
    queue = RunQueue(db)
    thread = new_id()
    a = await _enqueue(queue, thread)
    b = await _enqueue(queue, thread)
    assert [r["run_id"] for r in await queue.active_for_thread(T, thread)] == [a, b]
    assert await queue.set_status(T, [a], "interrupted") == 1
    assert await queue.set_status(T, [a], "error") == 0  # only from an active status
    assert [r["run_id"] for r in await queue.active(T)] == [b]
    listed = await queue.list_for_thread(T, thread, status=None, limit=10, offset=0)
    assert {r["run_id"] for r in listed} == {a, b}
    assert await queue.delete(T, b) == 1
    assert await queue.active_for_thread(T, thread) == []
