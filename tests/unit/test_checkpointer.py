"""The checkpointer of the selected dialect (DOCKYARD_TEST_DATABASE) passes
langgraph-checkpoint-conformance: SQLite's ``LoopSqliteSaver``, or PostgreSQL's
``AsyncPostgresSaver`` on Dockyard's pool (``PooledPostgresSaver``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

from langgraph.checkpoint.conformance import checkpointer_test, validate

from dockyard.storage import create_storage
from tests.conftest import TEST_DATABASE, NewDatabase


async def test_checkpointer_conformance(new_database: NewDatabase, tmp_path: Path) -> None:
    @checkpointer_test(name=f"dockyard-{TEST_DATABASE}")
    async def factory() -> AsyncGenerator[object, None]:
        # A fresh database per capability suite, as validate() expects.
        storage = create_storage(new_database(), default_path=tmp_path / "unused.sqlite")
        await storage.open()
        try:
            await storage.migrate()
            yield storage.checkpointer
        finally:
            await storage.close()

    report = await validate(factory)
    failed = {name: r for name, r in report.results.items() if r.detected and r.passed is not True}
    assert report.passed_all_base(), failed
    assert report.passed_all(), failed


async def test_sync_calls_from_other_threads_never_land_inside_a_transaction(
    tmp_path: Path,
) -> None:
    """A sync node invoking a subgraph uses the checkpointer's sync methods from a worker
    thread. On SQLite the connection is shared with Dockyard's transactions on the loop: such a
    call must wait for the loop instead of committing (or joining) a transaction in flight."""
    import asyncio
    import threading

    from langgraph.checkpoint.base import empty_checkpoint

    from dockyard.services.ids import new_id
    from dockyard.storage.resources import Threads
    from dockyard.storage.sqlite import SqliteStorage

    storage = SqliteStorage(tmp_path / "db.sqlite")
    await storage.open()
    await storage.migrate()
    saver, threads = storage.checkpointer, Threads(storage)
    stop = threading.Event()
    puts = 0

    def writer() -> None:
        nonlocal puts
        while not stop.is_set():
            cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
            saver.put(cfg, empty_checkpoint(), {"step": puts}, {})  # type: ignore[arg-type]
            puts += 1

    loop = asyncio.get_running_loop()
    background = loop.run_in_executor(None, writer)
    try:
        for _ in range(1500):
            async with storage.transaction() as tx:
                await threads.insert("default", new_id(), {}, tx=tx)
                await threads.insert("default", new_id(), {}, tx=tx)
            await asyncio.sleep(0)  # where the loop runs the other thread's calls
    finally:
        stop.set()
        await background
        await storage.close()
    assert puts > 0
