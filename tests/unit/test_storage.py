"""Storage on the database DOCKYARD_TEST_DATABASE selects (see tests/conftest.py): migrations,
assistant versions, thread filters, the run queue, checkpoint deletion and copy."""

from __future__ import annotations

import asyncio
import operator
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

from dockyard.errors import ConfigError, InvalidInput, StorageError
from dockyard.services.ids import new_id
from dockyard.storage import create_storage
from dockyard.storage.base import Storage, dumps, utcnow
from dockyard.storage.postgres import PostgresStorage, adapt_ddl, split_with, to_pyformat
from dockyard.storage.queue import RunQueue, in_seconds
from dockyard.storage.resources import Assistants, Threads
from dockyard.storage.sqlite import SqliteStorage
from tests.conftest import TEST_DATABASE, NewDatabase

T = "default"

postgres_only = pytest.mark.skipif(TEST_DATABASE != "postgres",
                                   reason="PostgreSQL only (DOCKYARD_TEST_DATABASE=postgres)")


# ---- migrations ---------------------------------------------------------------------------
# Every migration file, in order (a new file must be applied once, in its place).
MIGRATIONS = [f"{i:04d}" for i in range(1, 11)]
assert sorted(p.name[:4] for p in (Path(__file__).parents[2] / "src" / "dockyard" / "storage"
                                   / "migrations").glob("*.sql")) == MIGRATIONS


async def test_migrations_are_idempotent(new_database: NewDatabase, tmp_path: Path) -> None:
    url = new_database(migrated=False)
    storage = create_storage(url, default_path=tmp_path / "unused.sqlite")
    await storage.open()
    try:
        assert await storage.migrate() == MIGRATIONS
        assert await storage.migrate() == []
        rows = await storage.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == MIGRATIONS
        await Threads(storage).insert(T, new_id(), {"kept": True})
    finally:
        await storage.close()
    # A second process (or a restart) finds everything applied and keeps the data.
    again = create_storage(url, default_path=tmp_path / "unused.sqlite")
    await again.open()
    try:
        assert await again.migrate() == []
        assert await Threads(again).count(T, metadata={"kept": True}) == 1
    finally:
        await again.close()


async def test_sqlite_pragmas_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "db.sqlite"
    storage = create_storage(f"sqlite:///{path}", default_path=tmp_path / "unused.sqlite")
    assert isinstance(storage, SqliteStorage)
    await storage.open()
    try:
        await storage.migrate()
        pragmas = {name: (await storage.fetchone(f"PRAGMA {name}") or {}) for name in
                   ("journal_mode", "foreign_keys")}
        assert pragmas["journal_mode"]["journal_mode"] == "wal"
        assert pragmas["foreign_keys"]["foreign_keys"] == 1
    finally:
        await storage.close()


@postgres_only
async def test_postgres_migrations_race_and_schema(new_database: NewDatabase) -> None:
    """API replicas and workers start together: the advisory lock lets one migrate."""
    url = new_database(migrated=False)
    storages = [PostgresStorage(url) for _ in range(3)]
    for s in storages:
        await s.open()
    try:
        results = await asyncio.gather(*(s.migrate() for s in storages))
        assert sorted(results) == [[], [], MIGRATIONS]
        cols = {(r["table_name"], r["column_name"]): r for r in await storages[0].fetchall(
            "SELECT table_name, column_name, data_type, collation_name"
            " FROM information_schema.columns WHERE table_schema = 'public'")}
        assert cols[("threads", "metadata")]["data_type"] == "jsonb"
        assert cols[("store_items", "ttl_minutes")]["data_type"] == "double precision"
        assert cols[("runs", "priority")]["data_type"] == "bigint"
        # Byte order, as SQLite's BINARY collation, whatever the database's locale.
        assert cols[("threads", "created_at")]["collation_name"] == "C"
        assert ("checkpoints", "checkpoint") in cols  # the checkpointer's tables too
    finally:
        for s in storages:
            await s.close()


def test_database_urls_pick_the_dialect(tmp_path: Path) -> None:
    for url in ("mysql://x", "sqlite://relative"):
        with pytest.raises(ConfigError) as info:
            create_storage(url, default_path=tmp_path / "x.sqlite")
        assert "DOCKYARD_DATABASE_URL" in str(info.value)
    for url in ("postgresql://u:pw@db.example:5433/app", "postgres://u@db.example/app"):
        storage = create_storage(url, default_path=tmp_path / "x.sqlite")  # connects on open()
        assert isinstance(storage, PostgresStorage) and storage.dialect == "postgres"
    assert PostgresStorage("postgresql://u:pw@db.example:5433/app").where == "db.example:5433/app"
    with pytest.raises(ConfigError) as bad:
        create_storage("postgresql://u:s3cret@[h/x", default_path=tmp_path / "x.sqlite")
    assert "s3cret" not in str(bad.value)


async def test_postgres_unreachable_names_the_host_not_the_password() -> None:
    storage = PostgresStorage("postgresql://dockyard:s3cret@127.0.0.1:1/app", connect_timeout=1)
    with pytest.raises(StorageError) as info:
        await storage.open()
    assert "127.0.0.1:1/app" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_placeholders_translate_outside_literals() -> None:
    assert to_pyformat("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == (
        "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)")
    # Literals, quoted identifiers and comments keep their '?'; every '%' is escaped.
    assert to_pyformat("SELECT '?', 'it''s ?', \"we?ird\" FROM t WHERE x LIKE 'a%' AND y = ?") == (
        "SELECT '?', 'it''s ?', \"we?ird\" FROM t WHERE x LIKE 'a%%' AND y = %s")
    assert to_pyformat("SELECT E'\\'?', ? -- what?\n, ? /* ? */") == (
        "SELECT E'\\'?', %s -- what?\n, %s /* ? */")
    assert to_pyformat("SELECT ? || 'unterminated ?") == "SELECT %s || 'unterminated ?"


def test_portable_ddl_in_postgres_types() -> None:
    ddl = ("CREATE TABLE t (a TEXT PRIMARY KEY, b JSON NOT NULL, c REAL, d INTEGER DEFAULT 0,"
           " e BLOB, \"text\" TEXT DEFAULT 'JSON', f TEXT COLLATE \"C\")")
    assert adapt_ddl(ddl) == (
        'CREATE TABLE t (a TEXT COLLATE "C" PRIMARY KEY, b JSONB NOT NULL, c DOUBLE PRECISION,'
        ' d BIGINT DEFAULT 0, e BYTEA, "text" TEXT COLLATE "C" DEFAULT \'JSON\', f TEXT COLLATE "C")')


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


async def test_claim_many_takes_a_batch_one_run_per_thread(db: Storage) -> None:
    """A worker with a backlog claims several runs at once (one statement on PostgreSQL): in
    claim order, at most one per thread (its oldest), never a thread's run while another of
    its runs is running, and ``saw_pending`` says whether any other run is left."""
    queue = RunQueue(db)
    busy, double = new_id(), new_id()
    running = await _enqueue(queue, busy)
    claimed = await queue.claim("w0", lease_seconds=30)
    assert claimed is not None and claimed["run_id"] == running
    behind = await _enqueue(queue, busy)  # waits for `running`
    first = await _enqueue(queue, double)
    second = await _enqueue(queue, double)  # waits for `first`
    others = [await _enqueue(queue, new_id()) for _ in range(3)]
    high = await _enqueue(queue, new_id(), priority=3)

    batch = await queue.claim_many("w1", 30, 3)
    assert [r["run_id"] for r in batch] == [high, first, others[0]]
    assert all(r["status"] == "running" and r["worker_id"] == "w1" for r in batch)
    assert queue.saw_pending  # others[1:], second and behind are still pending
    batch = await queue.claim_many("w1", 30, 8)
    assert [r["run_id"] for r in batch] == others[1:]
    assert queue.saw_pending  # second and behind: pending, if blocked
    assert await queue.claim_many("w2", 30, 8) == []
    await queue.finish(first, "success")
    await queue.finish(running, "success")
    batch = await queue.claim_many("w2", 30, 8)
    assert sorted(r["run_id"] for r in batch) == sorted([second, behind])
    assert not queue.saw_pending
    for run_id in (high, first, second, behind, *others):
        row = await queue.get(T, run_id)
        assert row is not None and row["attempts"] == 1  # each claimed once


async def test_claim_many_takes_only_its_revisions_runs(db: Storage) -> None:
    """A revision's workers claim its runs only, in batches too; the base's workers the rest."""
    queue = RunQueue(db)
    pinned = [await _enqueue(queue, new_id(), revision_id="rev-1") for _ in range(2)]
    base = await _enqueue(queue, new_id())
    other = await _enqueue(queue, new_id(), revision_id="rev-2")
    got = await queue.claim_many("w", 30, 4, revision="rev-1")
    assert sorted(r["run_id"] for r in got) == sorted(pinned)
    assert [r["run_id"] for r in await queue.claim_many("w", 30, 4)] == [base]
    assert [r["run_id"] for r in await queue.claim_many("w", 30, 4, revision="rev-2")] == [other]


async def test_claim_many_rotates_between_tenants(db: Storage) -> None:
    """A batch takes up to its size from one tenant, and the next starts after it: a burst of
    one tenant does not starve another's runs."""
    queue = RunQueue(db)

    async def enqueue(tenant: str) -> str:
        run_id = new_id()
        await queue.insert(tenant, {
            "run_id": run_id, "thread_id": new_id(), "assistant_id": str(uuid.uuid4()),
            "assistant_version": 1, "graph_id": "g", "metadata": {}, "kwargs": {"input": None},
            "multitask_strategy": "enqueue",
        })
        return run_id

    a_runs = [await enqueue("tenant-a") for _ in range(6)]
    b_runs = [await enqueue("tenant-b") for _ in range(2)]
    tenants = []
    while batch := await queue.claim_many("w", 30, 2):
        tenants.append([r["tenant_id"] for r in batch])
    # tenant-b's runs come in the first two batches (PostgreSQL: a, a then b, b; SQLite
    # claims one run at a time, so a, b then a, b), before tenant-a's backlog is done.
    assert sorted(t for batch in tenants[:2] for t in batch) == ["tenant-a"] * 2 + ["tenant-b"] * 2
    assert sum(len(b) for b in tenants) == len(a_runs) + len(b_runs)


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


@postgres_only
async def test_claim_looks_up_the_threads_checkpoint_by_index(db: Storage) -> None:
    """The claim asks whether the run's thread has a root checkpoint. Dockyard's columns are
    TEXT COLLATE "C" and langgraph's checkpoints table uses the default collation: compared as
    they are, the checkpoints index could not take the thread id, and each claim scanned every
    root checkpoint of every thread (0.3 ms after 300 runs, growing with the database)."""
    from dockyard.storage.postgres import to_pyformat

    queue = RunQueue(db)
    await _enqueue(queue, new_id())
    captured: list[tuple[str, Any]] = []
    fetchall = db.fetchall

    async def capture(sql: str, params: Any = ()) -> Any:
        captured.append((sql, params))
        raise RuntimeError("captured")

    db.fetchall = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            await queue.claim("w", lease_seconds=30)
    finally:
        db.fetchall = fetchall  # type: ignore[method-assign]
    sql, params = captured[0]
    # The plan only (no ANALYZE: nothing is claimed), with the index preferred wherever it
    # can serve, so a tiny test table does not make a sequential scan the cheaper plan.
    async with db.transaction() as tx:
        await tx.execute("SET LOCAL enable_seqscan = off")
        await tx.execute("SET LOCAL enable_bitmapscan = off")
        cur = await tx.execute("EXPLAIN (FORMAT JSON) " + to_pyformat(sql), params)
        row = await cur.fetchone()
        plan = next(iter(row.values())) if isinstance(row, dict) else row[0]
    scans: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("Relation Name") == "checkpoints":
            scans.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    assert scans and all("thread_id" in s.get("Index Cond", "") for s in scans), scans


@postgres_only
@pytest.mark.parametrize("batch", [1, 4])
async def test_concurrent_claims_take_each_run_once(new_database: NewDatabase,
                                                    batch: int) -> None:
    """Workers in several processes (here: several pools) claim with FOR UPDATE SKIP LOCKED,
    one run or a batch at a time: each run once, never two runs of one thread at a time."""
    url = new_database()
    storages = [PostgresStorage(url) for _ in range(3)]
    for s in storages:
        await s.open()
    try:
        threads = [new_id() for _ in range(8)]
        runs = {await _enqueue(RunQueue(storages[0]), threads[i % 8]) for i in range(48)}
        claimed: list[str] = []
        running: set[str] = set()

        async def work(queue: RunQueue, run: dict[str, Any]) -> None:
            await asyncio.sleep(0.002)
            running.discard(run["thread_id"])
            await queue.finish(run["run_id"], "success")

        async def worker(storage: Storage, name: str) -> None:
            queue = RunQueue(storage)
            while len(claimed) < len(runs):
                taken = await queue.claim_many(name, 30, batch)
                if not taken:
                    await asyncio.sleep(0.005)
                    continue
                for run in taken:
                    assert run["thread_id"] not in running, "two runs of one thread at once"
                    running.add(run["thread_id"])
                    claimed.append(run["run_id"])
                await asyncio.gather(*(work(queue, run) for run in taken))

        await asyncio.wait_for(
            asyncio.gather(*(worker(s, f"w{i}") for i, s in enumerate(storages))), 30)
        assert sorted(claimed) == sorted(runs)
    finally:
        for s in storages:
            await s.close()


# ---- checkpoints --------------------------------------------------------------------------------
class _Steps(TypedDict):
    steps: Annotated[list[str], operator.add]


def _graph(db: Storage) -> Any:
    from langgraph.graph import END, START, StateGraph

    builder = StateGraph(_Steps)
    builder.add_node("a", lambda s: {"steps": ["a"]})
    builder.add_node("b", lambda s: {"steps": ["b"]})
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    return builder.compile(checkpointer=db.checkpointer)


async def test_checkpoint_delete_and_copy(db: Storage) -> None:
    graph = _graph(db)
    tid, copy = new_id(), new_id()

    def cfg(thread: str, run_id: str | None = None) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread},
                **({"metadata": {"run_id": run_id}} if run_id else {})}

    async def history(thread: str) -> list[Any]:
        return [s async for s in graph.aget_state_history(cfg(thread))]

    await graph.ainvoke({"steps": ["in1"]}, cfg(tid, "r1"))
    after_first = len(await history(tid))
    await graph.ainvoke({"steps": ["in2"]}, cfg(tid, "r2"))
    values = (await graph.aget_state(cfg(tid))).values
    assert values == {"steps": ["in1", "a", "b", "in2", "a", "b"]}
    full = len(await history(tid))

    await db.copy_checkpoints(tid, copy)
    assert (await graph.aget_state(cfg(copy))).values == values
    assert len(await history(copy)) == full

    # Rollback of the second run: the thread is back where the first run left it.
    await db.delete_checkpoints(tid, run_id="r2")
    assert (await graph.aget_state(cfg(tid))).values == {"steps": ["in1", "a", "b"]}
    assert len(await history(tid)) == after_first
    # A new run continues from there (the shared channel values survived the deletion).
    await graph.ainvoke({"steps": ["in3"]}, cfg(tid, "r3"))
    assert (await graph.aget_state(cfg(tid))).values == {"steps": ["in1", "a", "b", "in3", "a", "b"]}

    # Prune: only the latest checkpoint stays, with the whole state.
    await db.delete_checkpoints(copy, keep_latest=True)
    assert len(await history(copy)) == 1
    assert (await graph.aget_state(cfg(copy))).values == values

    await db.delete_checkpoints(tid)
    assert await db.checkpointer.aget_tuple(cfg(tid)) is None  # type: ignore[arg-type]
    assert (await graph.aget_state(cfg(copy))).values == values  # the copy is independent
    if db.dialect == "postgres":  # nothing of the thread is left behind, blobs included
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            row = await db.fetchone(f"SELECT COUNT(*) AS n FROM {table} WHERE thread_id = ?", (tid,))
            assert row == {"n": 0}, table


async def test_duplicate_keys_are_conflicts(db: Storage) -> None:
    """A unique violation (e.g. two creates racing past the existence check) is a 409."""
    from dockyard.errors import Conflict

    row = _assistant()
    await Assistants(db).insert(T, row)
    with pytest.raises(Conflict):
        await Assistants(db).insert(T, row)
    assert await Assistants(db).count(T) == 1  # the failed transaction left nothing behind


async def test_a_batch_is_one_transaction_and_keeps_its_values_as_given(db: Storage) -> None:
    """``execute_batch``: every statement or none; values reach the rows exactly (quotes,
    ``%`` and ``?`` in values and in literals, JSON text, NULL), whichever way they are bound."""
    threads = Threads(db)
    a, b = new_id(), new_id()
    await threads.insert(T, a, {"n": 1})
    odd = "it's 100% sure? {\"k\": [1, 2]} ;\n -- not a comment"
    await db.execute_batch([
        threads.update_statement(T, a, metadata={"note": odd}, status="busy"),
        ("UPDATE threads SET error = ? WHERE tenant_id = ? AND thread_id = ?"
         " AND status = 'busy' AND '50%?' = '50%?'", (dumps(odd), T, a)),
        ("UPDATE threads SET \"values\" = NULL WHERE tenant_id = ? AND thread_id = ?", (T, a)),
    ])
    row = await threads.get(T, a)
    assert row is not None
    assert row["metadata"] == {"note": odd} and row["error"] == odd and row["status"] == "busy"
    from dockyard.errors import Conflict

    with pytest.raises(Conflict):  # the second insert collides: the first is undone with it
        insert = ("INSERT INTO threads (tenant_id, thread_id, status, metadata, config,"
                  " interrupts, created_at, updated_at)"
                  " VALUES (?, ?, 'idle', '{}', '{}', '{}', ?, ?)")
        await db.execute_batch([(insert, (T, b, utcnow(), utcnow())),
                                (insert, (T, a, utcnow(), utcnow()))])
    assert await threads.get(T, b) is None
    await db.execute_batch([])


async def test_writes_together_are_one_transaction_and_keep_their_values(db: Storage) -> None:
    """``execute_together`` (writes to disjoint rows; one statement on PostgreSQL): all or
    nothing, values exactly as given, and a last statement that is not a write (the NOTIFY)."""
    threads = Threads(db)
    a, b = new_id(), new_id()
    await threads.insert(T, a, {"n": 1})
    await threads.insert(T, b, {"n": 2})
    odd = "it's 100% sure? {\"k\": [1, 2]} ;\n -- not a comment"
    notify = db.notify_statement("base") or ("SELECT 1", ())
    await db.execute_together([
        threads.update_statement(T, a, metadata={"note": odd}, status="busy"),
        ("UPDATE threads SET error = ? WHERE tenant_id = ? AND thread_id = ?"
         " AND '50%?' = '50%?'", (dumps(odd), T, b)),
        notify,
    ])
    row_a, row_b = await threads.get(T, a), await threads.get(T, b)
    assert row_a is not None and row_b is not None
    assert row_a["metadata"] == {"note": odd} and row_a["status"] == "busy"
    assert row_b["error"] == odd and row_b["metadata"] == {"n": 2}
    from dockyard.errors import Conflict

    insert = ("INSERT INTO threads (tenant_id, thread_id, status, metadata, config,"
              " interrupts, created_at, updated_at)"
              " VALUES (?, ?, 'idle', '{}', '{}', '{}', ?, ?)")
    c = new_id()
    with pytest.raises(Conflict):  # the second insert collides: the first is undone with it
        await db.execute_together([(insert, (T, c, utcnow(), utcnow())),
                                   (insert, (T, a, utcnow(), utcnow()))])
    assert await threads.get(T, c) is None
    await db.execute_together([])
    if isinstance(db, PostgresStorage):
        # One statement, bound on the server: prepared on the connection (the pool hands the
        # same one out again).
        async with db._connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM pg_prepared_statements"
                                     " WHERE statement LIKE 'WITH s0 AS (INSERT INTO threads%'")
            row = await cur.fetchone()
            assert row is not None and row["n"] == 1


def test_a_with_clause_splits_into_its_ctes_and_main_statement() -> None:
    sql = ("WITH a AS (SELECT ')' AS x, f(1, (2)) -- (\n), "
           "B AS MATERIALIZED (INSERT INTO t VALUES ('(', \"q)\") RETURNING 1) "
           "UPDATE u SET v = (SELECT x FROM a) WHERE w = ')'")
    split = split_with(sql)
    assert split is not None
    ctes, main = split
    assert [name for name, _ in ctes] == ["a", "b"]
    assert ctes[0][1] == "a AS (SELECT ')' AS x, f(1, (2)) -- (\n)"
    assert ctes[1][1] == "B AS MATERIALIZED (INSERT INTO t VALUES ('(', \"q)\") RETURNING 1)"
    assert main == "UPDATE u SET v = (SELECT x FROM a) WHERE w = ')'"
    assert split_with("UPDATE t SET a = 1") is None
    assert split_with("WITH RECURSIVE r AS (SELECT 1) SELECT * FROM r") is None
    assert split_with("WITH a (x) AS (SELECT 1) SELECT * FROM a") is None
    assert split_with("WITH a AS (SELECT (1) SELECT 1") is None  # unbalanced


async def test_writes_together_keep_their_own_with_clauses(db: Storage) -> None:
    """``execute_together`` of statements that have CTEs of their own: on PostgreSQL they join
    the one statement's; two CTEs of one name send the statements as a batch. Either way all
    or nothing, and the values exact."""
    threads = Threads(db)
    a, b, c = new_id(), new_id(), new_id()
    for thread in (a, b, c):
        await threads.insert(T, thread, {"n": 0})
    with_note = ("WITH picked AS (SELECT ? AS note) UPDATE threads SET error ="
                 " (SELECT note FROM picked) WHERE tenant_id = ? AND thread_id = ?")
    also_picked = ("WITH picked AS (SELECT ? AS st) UPDATE threads SET status ="
                   " (SELECT st FROM picked) WHERE tenant_id = ? AND thread_id = ?")
    other = ("WITH chosen AS (SELECT ? AS st) UPDATE threads SET status ="
             " (SELECT st FROM chosen) WHERE tenant_id = ? AND thread_id = ?")
    await db.execute_together([
        (with_note, (dumps("50% (sure)?"), T, a)),
        (other, ("busy", T, b)),
        threads.update_statement(T, c, status="interrupted"),
    ])
    rows = [await threads.get(T, t) for t in (a, b, c)]
    assert [r["error"] if r else None for r in rows][:1] == ["50% (sure)?"]
    assert [r["status"] if r else None for r in rows] == ["idle", "busy", "interrupted"]
    await db.execute_together([(with_note, (dumps("again"), T, b)),
                               (also_picked, ("error", T, a))])
    rows = [await threads.get(T, t) for t in (a, b)]
    assert [(r or {}).get("error") for r in rows] == ["50% (sure)?", "again"]
    assert (rows[0] or {}).get("status") == "error"
    from dockyard.errors import Conflict

    insert = ("WITH stamp AS (SELECT ? AS at) INSERT INTO threads (tenant_id, thread_id, status,"
              " metadata, config, interrupts, created_at, updated_at)"
              " SELECT ?, ?, 'idle', '{}', '{}', '{}', at, at FROM stamp")
    d = new_id()
    with pytest.raises(Conflict):  # the second insert collides: the first is undone with it
        await db.execute_together([(insert, (utcnow(), T, d)), (other, ("busy", T, a)),
                                   (insert.replace("stamp", "stamp2"), (utcnow(), T, a))])
    assert await threads.get(T, d) is None
    assert (await threads.get(T, a) or {}).get("status") == "error"
    if isinstance(db, PostgresStorage):
        # The first call was one statement, bound on the server (so prepared), the CTEs of
        # its statements first.
        async with db._connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM pg_prepared_statements WHERE statement LIKE"
                " 'WITH picked AS (SELECT $1 AS note), s0 AS (UPDATE threads SET error = %'")
            row = await cur.fetchone()
            assert row is not None and row["n"] == 1


async def test_a_read_batch_gives_each_statements_rows_as_the_lone_reads_do(
    db: Storage,
) -> None:
    """``fetch_batch``: one list of rows per statement, in order, decoded as ``fetchone`` and
    ``fetchall`` decode them; a statement that finds nothing gives an empty list."""
    threads = Threads(db)
    a, b = new_id(), new_id()
    odd = "it's 100% sure? {\"k\": [1, 2]} ;\n -- not a comment"
    await threads.insert(T, a, {"note": odd})
    await threads.insert(T, b, {"n": 2})
    both = ("SELECT thread_id FROM threads WHERE tenant_id = ? AND metadata IS NOT NULL"
            " AND thread_id IN (?, ?) ORDER BY thread_id", (T, a, b))
    got = await db.fetch_batch([
        threads.get_statement(T, a),
        threads.get_statement(T, new_id()),
        both,
        threads.get_statement(T, b),
    ])
    assert got[0] == [await threads.get(T, a)]
    assert got[0][0]["metadata"] == {"note": odd}
    assert got[1] == []
    assert got[2] == await db.fetchall(*both) and len(got[2]) == 2
    assert got[3] == [await threads.get(T, b)]
    assert await db.fetch_batch([]) == []


@postgres_only
async def test_a_pool_connection_prepares_a_statement_at_its_first_execution(
    db: Storage,
) -> None:
    """The claim's plan costs PostgreSQL 0.7 ms: a statement run less often than psycopg's
    default threshold (five times on each of the pool's connections) would be planned anew
    each time."""
    assert isinstance(db, PostgresStorage)
    async with db._connection() as conn:
        await conn.execute("SELECT %s::int + 41 AS answer", (1,))
        cur = await conn.execute(
            "SELECT count(*) AS n FROM pg_prepared_statements"
            " WHERE statement = 'SELECT $1::int + 41 AS answer'")
        row = await cur.fetchone()
        assert row is not None and row["n"] == 1


@postgres_only
async def test_the_pool_hands_out_the_connection_returned_last(db: Storage) -> None:
    """Its PostgreSQL backend is the warmest; psycopg's pool would rotate through them all."""
    assert isinstance(db, PostgresStorage)
    pids: list[int] = []
    releases = [asyncio.Event() for _ in range(3)]

    async def hold(release: asyncio.Event) -> None:
        async with db._connection() as conn:
            pids.append(conn.info.backend_pid)
            await release.wait()

    tasks = [asyncio.create_task(hold(r)) for r in releases]
    while len(pids) < 3:
        await asyncio.sleep(0.01)
    assert len(set(pids)) == 3
    for release, task in zip(releases, tasks, strict=True):  # returned in the order taken
        release.set()
        await task
    for _ in range(3):
        async with db._connection() as conn:
            assert conn.info.backend_pid == pids[-1]


@postgres_only
async def test_notify_wakes_listeners_across_processes_and_survives_a_lost_connection(
    new_database: NewDatabase,
) -> None:
    url = new_database()
    api, worker = PostgresStorage(url), PostgresStorage(url)
    await api.open()
    await worker.open()
    woken = asyncio.Event()
    try:
        await worker.listen_runs(lambda _kind: woken.set())
        await api.notify_runs()
        await asyncio.wait_for(woken.wait(), 5)
        # The listener's connection dies (server restart, network): it reconnects and looks
        # for runs at once, since notifications sent meanwhile are lost.
        woken.clear()
        assert await api.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = 'LISTEN dockyard_runs'") == 1
        await asyncio.wait_for(woken.wait(), 5)
        woken.clear()
        await api.notify_runs()
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await api.close()
        await worker.close()


def notify(db: Storage, kind: str) -> tuple[str, Any]:
    statement = db.notify_statement(kind)
    assert statement is not None
    return statement


@postgres_only
async def test_a_notify_in_a_transaction_is_sent_by_its_commit_only(
    new_database: NewDatabase,
) -> None:
    """Run creation sends its wake-up with the run's rows (``notify_statement``): a worker
    woken by it finds the run, and a rolled-back creation wakes nobody."""
    url = new_database()
    api, worker = PostgresStorage(url), PostgresStorage(url)
    await api.open()
    await worker.open()
    kinds: list[str] = []
    woken = asyncio.Event()

    def heard(kind: str) -> None:
        kinds.append(kind)
        woken.set()

    try:
        await worker.listen_runs(heard)
        with pytest.raises(RuntimeError):
            async with api.transaction() as tx:
                await api.execute_in(tx, *notify(api, "rolled-back"))
                raise RuntimeError("the run's write failed")
        async with api.transaction() as tx:
            await api.execute_in(tx, *notify(api, "base"))
            await asyncio.sleep(0.3)
            assert not woken.is_set()  # not before the commit
        await asyncio.wait_for(woken.wait(), 5)
        await asyncio.sleep(0.1)
        assert kinds == ["base"]
    finally:
        await api.close()
        await worker.close()


@postgres_only
async def test_caps_hold_across_processes(new_database: NewDatabase) -> None:
    """Tenant and assistant caps are check-then-act: claimers in several processes (here:
    pools) racing for one tenant never run more than the cap at once."""
    url = new_database()
    storages = [PostgresStorage(url) for _ in range(4)]
    for s in storages:
        await s.open()
    try:
        runs = {await _enqueue(RunQueue(storages[0]), new_id()) for _ in range(24)}
        finished: list[str] = []
        running: set[str] = set()
        peak = 0

        async def worker(storage: Storage, name: str) -> None:
            nonlocal peak
            queue = RunQueue(storage)
            while len(finished) < len(runs):
                run = await queue.claim(name, lease_seconds=30, tenant_limit=2)
                if run is None:
                    await asyncio.sleep(0.002)
                    continue
                running.add(run["run_id"])
                peak = max(peak, len(running))
                await asyncio.sleep(0.005)
                running.discard(run["run_id"])
                await queue.finish(run["run_id"], "success")
                finished.append(run["run_id"])

        await asyncio.wait_for(
            asyncio.gather(*(worker(s, f"w{i}") for i, s in enumerate(storages))), 60)
        assert sorted(finished) == sorted(runs)
        assert peak <= 2
    finally:
        for s in storages:
            await s.close()


@postgres_only
async def test_a_statement_with_many_parameters_is_parsed_once(db: Storage) -> None:
    """psycopg caches a query's parsed placeholders only up to 50 parameters by default; a
    run's outcome has more (run, checkpoint, thread and trace rows), so the limit is raised."""
    from psycopg import _queries

    sql = "SELECT " + ", ".join("?::int AS c" + str(i) for i in range(120))
    before = _queries._query2pg.cache_info()
    for _ in range(3):
        row = await db.fetchone(sql, tuple(range(120)))
        assert row is not None and row["c119"] == 119
    after = _queries._query2pg.cache_info()
    assert after.hits - before.hits >= 2


@postgres_only
async def test_typed_arrays_round_trip_in_binary(db: Storage) -> None:
    """The checkpointer's array parameters (storage/pg_arrays.py) are dumped in binary in one
    pass: what PostgreSQL reads back, through a cast and through unnest, is what was sent,
    NULLs, empty arrays, quotes, backslashes, braces, non-ASCII text and every byte included."""
    from psycopg.adapt import Transformer
    from psycopg.pq import Format

    from dockyard.storage.pg_arrays import BlobArray, IntArray, TextArray

    cases: list[tuple[list[Any], str]] = [
        (TextArray(['a"b', "c\\d", None, "", "NULL", " x ", "{,}", "é ✓"]), "text[]"),
        (TextArray([]), "text[]"),
        (TextArray([None]), "text[]"),
        (IntArray([0, None, -5, 2**31 - 1, -(2**31)]), "integer[]"),
        (IntArray([]), "integer[]"),
        (BlobArray([b"", None, b"\x00\xff", bytes(range(256))]), "bytea[]"),
        (BlobArray([]), "bytea[]"),
    ]
    for value, cast in cases:
        row = await db.fetchone(f"SELECT ?::{cast} AS v", (value,))
        assert row is not None and row["v"] == list(value), (cast, value)
        rows = await db.fetchall(f"SELECT x FROM unnest(?::{cast}) WITH ORDINALITY AS u(x, i) "
                                 "ORDER BY i", (value,))
        assert [r["x"] for r in rows] == list(value), (cast, value)
    # Binary, by their own dumpers (not psycopg's element-by-element list dumper).
    tx = Transformer()
    for value, _ in cases:
        dumper = tx.get_dumper(value, "s")  # type: ignore[arg-type]
        assert dumper.format == Format.BINARY and type(dumper).__module__.endswith("pg_arrays")
