"""The SQLite dialect's checkpointer passes langgraph-checkpoint-conformance."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

from langgraph.checkpoint.conformance import checkpointer_test, validate

from dockyard.storage.sqlite import SqliteStorage


async def test_loop_sqlite_saver_conformance(tmp_path: Path) -> None:
    counter = iter(range(1000))

    @checkpointer_test(name="dockyard-sqlite")
    async def factory() -> AsyncGenerator[object, None]:
        storage = SqliteStorage(tmp_path / f"cp{next(counter)}.db")
        await storage.open()
        try:
            yield storage.checkpointer
        finally:
            await storage.close()

    report = await validate(factory)
    failed = {name: r for name, r in report.results.items() if r.detected and r.passed is not True}
    assert report.passed_all_base(), failed
    assert report.passed_all(), failed
