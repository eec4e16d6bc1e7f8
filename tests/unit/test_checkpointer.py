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
