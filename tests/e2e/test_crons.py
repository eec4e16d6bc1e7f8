"""Crons through the official langgraph-sdk client against a real `dockyard dev` process.

Instead of waiting for the clock, a test moves a cron's ``next_run_date`` into the past in
the server's database; the server's scheduler (polling every 0.2 s here,
DOCKYARD_CRON_POLL_SECONDS) then finds the tick due and fires it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from dockyard.config import SQLITE_FILENAME
from dockyard.storage import create_storage
from tests.e2e.conftest import Server, make_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cron_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("crons"), DOCKYARD_CRON_POLL_SECONDS="0.2")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
async def client(cron_server: Server):  # type: ignore[no-untyped-def]
    c = get_client(url=cron_server.url)
    yield c
    await c.aclose()


@pytest.fixture
async def make_due(cron_server: Server, tmp_path: Path) -> AsyncIterator[Any]:
    """Move a cron's next tick into the past, in the server's own database."""
    url = cron_server.env.get("DOCKYARD_DATABASE_URL") or (
        f"sqlite:///{cron_server.data_dir / SQLITE_FILENAME}")
    storage = create_storage(url, default_path=tmp_path / "unused.sqlite")
    await storage.open()

    async def move(cron_id: str) -> None:
        past = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        n = await storage.execute("UPDATE crons SET next_run_date = ? WHERE cron_id = ?",
                                  (past, cron_id))
        assert n == 1

    yield move
    await storage.close()


async def _eventually(probe: Any, timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("the cron did not fire")


async def test_thread_cron_fires_a_run_on_its_thread(client: Any, make_due: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    cron = await client.crons.create_for_thread(
        tid, "three_steps", schedule="* * * * *", input={"steps": []},
        metadata={"suite": "e2e"}, timezone="Europe/Paris", multitask_strategy="enqueue",
    )
    assert cron["thread_id"] == tid and cron["enabled"] is True
    assert cron["timezone"] == "Europe/Paris" and cron["metadata"] == {"suite": "e2e"}
    assert await client.crons.count(thread_id=tid) == 1
    [found] = await client.crons.search(thread_id=tid, assistant_id="three_steps")
    assert found["cron_id"] == cron["cron_id"]

    await make_due(cron["cron_id"])
    runs = await _eventually(lambda: client.runs.list(tid))
    assert len(runs) == 1 and runs[0]["metadata"]["cron_id"] == cron["cron_id"]
    result = await client.runs.join(tid, runs[0]["run_id"])
    assert result == {"steps": ["a", "b", "c"]}
    assert (await client.runs.get(tid, runs[0]["run_id"]))["status"] == "success"

    updated = await client.crons.update(cron["cron_id"], enabled=False, end_time=None,
                                        schedule="0 8 * * 1-5")
    assert updated["enabled"] is False and updated["schedule"] == "0 8 * * 1-5"
    await client.crons.delete(cron["cron_id"])
    assert await client.crons.search(thread_id=tid) == []
    assert len(await client.runs.list(tid)) == 1  # the tick fired exactly once


async def test_stateless_cron_keeps_its_thread(client: Any, make_due: Any) -> None:
    cron = await client.crons.create(
        "three_steps", schedule="*/10 * * * *", input={"steps": ["x"]},
        on_run_completed="keep",
    )
    assert cron["thread_id"] is None and cron["on_run_completed"] == "keep"
    await make_due(cron["cron_id"])

    async def finished_thread() -> list[Any]:
        threads = await client.threads.search(metadata={"cron_id": cron["cron_id"]})
        return [t for t in threads if t["status"] == "idle" and t["values"]]

    [thread] = await _eventually(finished_thread)
    assert thread["values"] == {"steps": ["x", "a", "b", "c"]}
    await client.crons.delete(cron["cron_id"])


async def test_bad_cron_fields_are_refused(client: Any) -> None:
    from langgraph_sdk.errors import UnprocessableEntityError

    with pytest.raises(UnprocessableEntityError, match="timezone"):
        await client.crons.create("three_steps", schedule="* * * * *", timezone="Not/AZone")
    with pytest.raises(UnprocessableEntityError, match="schedule"):
        await client.crons.create("three_steps", schedule="whenever")
