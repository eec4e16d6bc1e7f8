"""Crons: the HTTP API (CRUD, search, count, validation), tenancy, and the scheduler —
catch-up after downtime, end_time, enabled, stateless threads, crash recovery of a claimed
tick, and exactly-once firing with two schedulers racing on one PostgreSQL database.

Runs on the database DOCKYARD_TEST_DATABASE selects. Scheduler tests stop the app's own
scheduler loop and drive ticks by hand, forging ``next_run_date`` into the past instead of
waiting for the clock.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from dockyard.errors import NotFound
from dockyard.services.core import Dockyard
from dockyard.services.ids import default_assistant_id
from tests.conftest import TEST_DATABASE, NewDatabase

GRAPHS = """
import operator
from typing import Annotated, TypedDict
from langgraph.graph import StateGraph, START, END

class S(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]

def tick(s):
    return {"steps": ["tick"]}

b = StateGraph(S)
b.add_node("tick", tick)
b.add_edge(START, "tick"); b.add_edge("tick", END)
graph = b.compile()
"""

NEVER_SOON = "0 0 1 1 *"  # once a year: CRUD tests never see a tick fire by itself
T = "default"


def _project(tmp_path: Path) -> Path:
    (tmp_path / "g.py").write_text(GRAPHS)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    return tmp_path


@pytest.fixture
async def api(tmp_path: Path, new_database: NewDatabase) -> AsyncIterator[FastAPI]:
    settings = Settings.from_env({"data_dir": str(tmp_path / "data"),
                                  "database_url": new_database()}, environ={})
    app = create_app(load_project(_project(tmp_path)), settings)
    dockyard: Dockyard = app.state.dockyard
    await dockyard.start()
    await dockyard.scheduler.stop()  # ticks are driven by the tests
    yield app
    await dockyard.stop()


@pytest.fixture
def dock(api: FastAPI) -> Dockyard:
    app: Dockyard = api.state.dockyard
    return app


@pytest.fixture
async def http(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://dockyard") as client:
        yield client


async def _thread(http: httpx.AsyncClient) -> str:
    resp = await http.post("/threads", json={})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["thread_id"])


async def _cron(http: httpx.AsyncClient, thread_id: str | None = None, **body: Any) -> dict[str, Any]:
    path = f"/threads/{thread_id}/runs/crons" if thread_id else "/runs/crons"
    resp = await http.post(path, json={"assistant_id": "g", "schedule": NEVER_SOON, **body})
    assert resp.status_code == 200, resp.text
    cron: dict[str, Any] = resp.json()
    return cron


async def _make_due(dock: Dockyard, cron_id: str, ago: timedelta = timedelta(minutes=1)) -> None:
    """Forge the next tick into the past, as if the clock had reached it."""
    when = (datetime.now(UTC) - ago).isoformat()
    assert await dock.storage.execute(
        "UPDATE crons SET next_run_date = ? WHERE cron_id = ?", (when, cron_id)) == 1


async def _cron_runs(dock: Dockyard, cron_id: str) -> list[dict[str, Any]]:
    rows = await dock.storage.fetchall("SELECT run_id, thread_id, status, metadata FROM runs")
    return [r for r in rows if r["metadata"].get("cron_id") == cron_id]


async def _settled(dock: Dockyard, run_id: str) -> dict[str, Any] | None:
    """The run once it ended (None if it was deleted with its thread)."""
    for _ in range(400):
        row = await dock.runs.queue.get(T, run_id)
        if row is None or row["status"] not in ("pending", "running"):
            return row
        await asyncio.sleep(0.025)
    raise AssertionError(f"run {run_id} did not finish")


# ---- CRUD ---------------------------------------------------------------------------------
async def test_thread_cron_create_get_patch_delete(http: httpx.AsyncClient) -> None:
    tid = await _thread(http)
    cron = await _cron(http, tid, input={"steps": []}, metadata={"team": "ops"},
                       schedule="*/5 * * * *", multitask_strategy="enqueue")
    assert set(cron) == {"cron_id", "assistant_id", "thread_id", "on_run_completed",
                         "end_time", "schedule", "timezone", "created_at", "updated_at",
                         "payload", "user_id", "next_run_date", "metadata", "enabled"}
    assert cron["thread_id"] == tid
    assert cron["assistant_id"] == default_assistant_id("g")
    assert cron["enabled"] is True and cron["end_time"] is None and cron["timezone"] is None
    assert cron["on_run_completed"] is None  # thread crons keep their thread
    assert cron["payload"]["input"] == {"steps": []}
    nxt = datetime.fromisoformat(cron["next_run_date"])
    created = datetime.fromisoformat(cron["created_at"])
    assert nxt > created and nxt.minute % 5 == 0 and nxt.second == 0

    got = await http.get(f"/runs/crons/{cron['cron_id']}")
    assert got.status_code == 200 and got.json() == cron

    end = datetime.now(UTC) + timedelta(days=30)
    patched = await http.patch(f"/runs/crons/{cron['cron_id']}", json={
        "schedule": "0 9 * * *", "timezone": "America/New_York", "enabled": False,
        "metadata": {"owner": "kim"}, "input": {"steps": ["x"]}, "end_time": end.isoformat(),
    })
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["schedule"] == "0 9 * * *" and body["timezone"] == "America/New_York"
    assert body["enabled"] is False
    assert body["metadata"] == {"team": "ops", "owner": "kim"}  # metadata merges
    assert body["payload"]["input"] == {"steps": ["x"]}
    assert body["payload"]["multitask_strategy"] == "enqueue"  # untouched fields stay
    assert datetime.fromisoformat(body["end_time"]) == end
    local = datetime.fromisoformat(body["next_run_date"]).astimezone(
        __import__("zoneinfo").ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (9, 0)

    # end_time: null clears it (the SDK's update(end_time=None)); omitted leaves it alone.
    cleared = await http.patch(f"/runs/crons/{cron['cron_id']}", json={"end_time": None})
    assert cleared.json()["end_time"] is None
    assert (await http.patch(f"/runs/crons/{cron['cron_id']}", json={})).json()["enabled"] is False

    assert (await http.delete(f"/runs/crons/{cron['cron_id']}")).status_code == 204
    assert (await http.get(f"/runs/crons/{cron['cron_id']}")).status_code == 404
    gone = await http.delete(f"/runs/crons/{cron['cron_id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "cron_not_found"


async def test_stateless_cron_defaults_and_end_time(http: httpx.AsyncClient) -> None:
    cron = await _cron(http, schedule="@hourly", checkpoint_during=False)
    assert cron["thread_id"] is None and cron["on_run_completed"] == "delete"
    assert cron["payload"]["durability"] == "exit"  # checkpoint_during maps as for runs
    kept = await _cron(http, on_run_completed="keep")
    assert kept["on_run_completed"] == "keep"
    # An end_time before the next tick: the cron will never fire.
    ended = await _cron(http, schedule="* * * * *",
                        end_time=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert ended["next_run_date"] is None


async def test_search_filters_sort_and_pages(http: httpx.AsyncClient) -> None:
    a, b = await _thread(http), await _thread(http)
    on_a = [await _cron(http, a, schedule=f"{m} * * * *") for m in (10, 20, 30)]
    on_b = await _cron(http, b, enabled=False, metadata={"kind": "report", "n": 1})
    free = await _cron(http, metadata={"kind": "report", "n": 2})
    everyone = {c["cron_id"] for c in [*on_a, on_b, free]}

    async def search(**body: Any) -> list[dict[str, Any]]:
        resp = await http.post("/runs/crons/search", json=body)
        assert resp.status_code == 200, resp.text
        rows: list[dict[str, Any]] = resp.json()
        return rows

    async def count(**body: Any) -> int:
        resp = await http.post("/runs/crons/count", json=body)
        assert resp.status_code == 200, resp.text
        return int(resp.json())

    assert {c["cron_id"] for c in await search(limit=100)} == everyone
    assert {c["cron_id"] for c in await search(thread_id=a)} == {c["cron_id"] for c in on_a}
    assert await count(thread_id=a) == 3 and await count() == 5
    assert [c["cron_id"] for c in await search(enabled=False)] == [on_b["cron_id"]]
    assert await count(enabled=True) == 4
    assert {c["cron_id"] for c in await search(metadata={"kind": "report"})} == {
        on_b["cron_id"], free["cron_id"]}
    assert [c["cron_id"] for c in await search(metadata={"n": 2})] == [free["cron_id"]]
    assert await count(metadata={"kind": "report"}) == 2
    # The graph id stands for its default assistant, as in the reference API.
    assert len(await search(assistant_id="g", limit=100)) == 5
    assert await count(assistant_id=default_assistant_id("g")) == 5

    # Default order: newest first. Pages do not overlap.
    newest = await search(limit=100)
    assert {c["cron_id"] for c in newest} == everyone
    assert newest == sorted(newest, key=lambda c: (c["created_at"], c["cron_id"]), reverse=True)
    pages = [await search(limit=2, offset=o) for o in (0, 2, 4)]
    assert [c["cron_id"] for p in pages for c in p] == [c["cron_id"] for c in newest]
    by_next = await search(thread_id=a, sort_by="next_run_date", sort_order="asc")
    dates = [c["next_run_date"] for c in by_next]
    assert dates == sorted(dates)

    picked = await search(thread_id=a, select=["cron_id", "schedule", "now"], limit=1)
    assert set(picked[0]) == {"cron_id", "schedule", "now"}


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"schedule": "every day"}, 422, "not a cron expression"),
    ({"schedule": "* * * * * *"}, 422, "5 fields"),
    ({"schedule": "0 0 31 2 *"}, 422, "never fires"),
    ({"timezone": "Mars/Olympus"}, 422, "timezone 'Mars/Olympus' is not an IANA"),
    ({"end_time": "tomorrow"}, 422, "end_time"),
    ({"enabled": "sometimes"}, 422, "enabled"),
    ({"on_run_completed": "archive"}, 422, "on_run_completed"),
    ({"multitask_strategy": "merge"}, 422, "multitask_strategy"),
    ({"durability": "forever"}, 422, "durability"),
    ({"interrupt_before": 3}, 422, "interrupt_before"),
    ({"stream_mode": "telepathy"}, 422, "telepathy"),
    ({"webhook": "ftp://example.com/hook"}, 422, "webhook"),
    ({"if_not_exists": "create"}, 422, "if_not_exists: unknown field"),
    ({"command": {"resume": 1}}, 422, "command: unknown field"),
    ({"assistant_id": "nope"}, 404, "Assistant 'nope' not found"),
])
async def test_create_refuses_bad_fields(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, needle: str
) -> None:
    resp = await http.post("/runs/crons", json={"assistant_id": "g", "schedule": NEVER_SOON,
                                                **body})
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["detail"], resp.json()


async def test_thread_cron_validation(http: httpx.AsyncClient) -> None:
    tid = await _thread(http)
    resp = await http.post(f"/threads/{tid}/runs/crons", json={
        "assistant_id": "g", "schedule": NEVER_SOON, "on_run_completed": "keep"})
    assert resp.status_code == 422 and "stateless crons only" in resp.json()["detail"]
    missing = await http.post("/threads/00000000-0000-0000-0000-000000000000/runs/crons",
                              json={"assistant_id": "g", "schedule": NEVER_SOON})
    assert missing.status_code == 404 and missing.json()["code"] == "thread_not_found"
    cron = await _cron(http, tid)
    for body, needle in (({"on_run_completed": "keep"}, "stateless crons only"),
                         ({"schedule": None}, "schedule cannot be null"),
                         ({"timezone": "Nowhere/Land"}, "not an IANA"),
                         ({"user_id": "x"}, "user_id: unknown field")):
        resp = await http.patch(f"/runs/crons/{cron['cron_id']}", json=body)
        assert resp.status_code == 422 and needle in resp.json()["detail"], resp.text
    for bad in ({"sort_by": "schedule"}, {"select": ["password"]}, {"limit": -1},
                {"thread_id": "not-a-uuid"}, {"assistant_id": "no-such-graph"}):
        assert (await http.post("/runs/crons/search", json=bad)).status_code == 422, bad
    assert (await http.get("/runs/crons/not-a-uuid")).status_code == 422
    assert (await http.get(f"/runs/crons/{tid}")).status_code == 404


async def test_crons_are_scoped_by_tenant(dock: Dockyard, http: httpx.AsyncClient) -> None:
    cron = await _cron(http, metadata={"k": 1})
    other = "tenant-b"
    with pytest.raises(NotFound):
        await dock.crons.get(other, cron["cron_id"])
    with pytest.raises(NotFound):
        await dock.crons.patch(other, cron["cron_id"], {"enabled": False})
    with pytest.raises(NotFound):
        await dock.crons.delete(other, cron["cron_id"])
    assert await dock.crons.search(other) == []
    assert await dock.crons.count(other, metadata={"k": 1}) == 0
    assert (await dock.crons.get(T, cron["cron_id"]))["enabled"] is True


async def test_deleting_a_thread_or_an_assistant_deletes_its_crons(
    http: httpx.AsyncClient,
) -> None:
    tid = await _thread(http)
    cron = await _cron(http, tid)
    assert (await http.delete(f"/threads/{tid}")).status_code == 204
    assert (await http.get(f"/runs/crons/{cron['cron_id']}")).status_code == 404
    assistant = (await http.post("/assistants", json={"graph_id": "g"})).json()
    own = await _cron(http, assistant_id=assistant["assistant_id"])
    other = await _cron(http)
    assert (await http.delete(f"/assistants/{assistant['assistant_id']}")).status_code in (200, 204)
    assert (await http.get(f"/runs/crons/{own['cron_id']}")).status_code == 404
    assert (await http.get(f"/runs/crons/{other['cron_id']}")).status_code == 200


# ---- the scheduler ------------------------------------------------------------------------
async def test_due_thread_cron_fires_a_run_through_the_queue(
    dock: Dockyard, http: httpx.AsyncClient
) -> None:
    tid = await _thread(http)
    cron = await _cron(http, tid, schedule="* * * * *", input={"steps": []},
                       metadata={"source": "cron-test"})
    assert await dock.scheduler.tick() == 0  # not due yet
    await _make_due(dock, cron["cron_id"])
    fired_at = datetime.now(UTC)
    assert await dock.scheduler.tick() == 1
    [run] = await _cron_runs(dock, cron["cron_id"])
    assert run["thread_id"] == tid
    assert run["metadata"] == {"source": "cron-test", "cron_id": cron["cron_id"]}
    done = await _settled(dock, run["run_id"])
    assert done is not None and done["status"] == "success"
    assert done["assistant_version"] == 1  # recorded like any run's
    thread = (await http.get(f"/threads/{tid}")).json()
    assert thread["values"] == {"steps": ["tick"]}
    after = (await http.get(f"/runs/crons/{cron['cron_id']}")).json()
    assert datetime.fromisoformat(after["next_run_date"]) > fired_at
    assert await dock.scheduler.tick() == 0  # the tick fired once


async def test_catch_up_after_downtime_fires_once_then_follows_the_schedule(
    dock: Dockyard, http: httpx.AsyncClient
) -> None:
    tid = await _thread(http)
    cron = await _cron(http, tid, schedule="* * * * *", input={"steps": []})
    # Down for three hours: 180 ticks of an every-minute cron were missed.
    await _make_due(dock, cron["cron_id"], ago=timedelta(hours=3))
    before = datetime.now(UTC)
    assert await dock.scheduler.tick() == 1
    assert await dock.scheduler.tick() == 0
    assert len(await _cron_runs(dock, cron["cron_id"])) == 1
    nxt = datetime.fromisoformat(
        (await http.get(f"/runs/crons/{cron['cron_id']}")).json()["next_run_date"])
    assert before < nxt <= datetime.now(UTC) + timedelta(minutes=1)  # continues from the next future tick


async def test_disabled_and_ended_crons_do_not_fire(dock: Dockyard, http: httpx.AsyncClient) -> None:
    tid = await _thread(http)
    off = await _cron(http, tid, schedule="* * * * *", enabled=False)
    await _make_due(dock, off["cron_id"])
    # Ended while the server was down: no catch-up run after end_time.
    ended = await _cron(http, tid, schedule="* * * * *",
                        end_time=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    await _make_due(dock, ended["cron_id"])
    await dock.storage.execute("UPDATE crons SET end_time = ? WHERE cron_id = ?",
                               ((datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
                                ended["cron_id"]))
    assert await dock.scheduler.tick() == 0
    assert await _cron_runs(dock, off["cron_id"]) == []
    assert await _cron_runs(dock, ended["cron_id"]) == []
    assert (await dock.crons.get(T, ended["cron_id"]))["next_run_date"] is None
    # Re-enabling does not replay what was missed while disabled.
    before = datetime.now(UTC)
    on = (await http.patch(f"/runs/crons/{off['cron_id']}", json={"enabled": True})).json()
    assert datetime.fromisoformat(on["next_run_date"]) > before
    assert await dock.scheduler.tick() == 0


@pytest.mark.parametrize("on_run_completed", ["delete", "keep"])
async def test_stateless_cron_thread_is_deleted_or_kept(
    dock: Dockyard, http: httpx.AsyncClient, on_run_completed: str
) -> None:
    cron = await _cron(http, schedule="* * * * *", input={"steps": []},
                       on_run_completed=on_run_completed)
    await _make_due(dock, cron["cron_id"])
    assert await dock.scheduler.tick() == 1
    [run] = await _cron_runs(dock, cron["cron_id"])
    await _settled(dock, run["run_id"])
    thread = await dock.threads.repo.get(T, run["thread_id"])
    if on_run_completed == "delete":
        for _ in range(200):  # deleted right after the run's status is written
            if thread is None:
                break
            await asyncio.sleep(0.025)
            thread = await dock.threads.repo.get(T, run["thread_id"])
        assert thread is None
    else:
        assert thread is not None and thread["values"] == {"steps": ["tick"]}
        assert thread["metadata"]["cron_id"] == cron["cron_id"]


async def test_a_tick_that_cannot_run_is_skipped(dock: Dockyard, http: httpx.AsyncClient) -> None:
    tid = await _thread(http)
    cron = await _cron(http, tid, schedule="* * * * *", multitask_strategy="reject")
    await dock.pool.stop(grace_seconds=0)  # keep the thread busy with a pending run
    await dock.runs.create(T, tid, {"assistant_id": "g", "input": {"steps": []}})
    await _make_due(dock, cron["cron_id"])
    before = datetime.now(UTC)
    assert await dock.scheduler.tick() == 0
    assert await _cron_runs(dock, cron["cron_id"]) == []
    row = await dock.crons.repo.get(T, cron["cron_id"])
    assert row is not None and row["claim_token"] is None
    assert datetime.fromisoformat(row["next_run_date"]) > before  # the tick passed, skipped


async def test_claim_of_a_dead_scheduler_is_taken_over_once(
    dock: Dockyard, http: httpx.AsyncClient
) -> None:
    tid = await _thread(http)
    cron = await _cron(http, tid, schedule="* * * * *", input={"steps": []})
    await _make_due(dock, cron["cron_id"])
    row = await dock.crons.repo.get(T, cron["cron_id"])
    assert row is not None
    tick = row["next_run_date"]
    # A scheduler claims the tick and dies before writing the run.
    assert await dock.crons.repo.claim(T, cron["cron_id"], tick, None, "dead-scheduler")
    assert await dock.scheduler.tick() == 0  # a fresh claim is left alone
    await dock.storage.execute("UPDATE crons SET claimed_at = ? WHERE cron_id = ?",
                               ((datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
                                cron["cron_id"]))
    assert await dock.scheduler.tick() == 1
    # The "dead" scheduler wakes up and tries to finish: its token is gone, nothing is written.
    assert await dock.crons._fire(row, tick, "dead-scheduler") == 0
    [run] = await _cron_runs(dock, cron["cron_id"])
    assert run["thread_id"] == tid
    fresh = await dock.crons.repo.get(T, cron["cron_id"])
    assert fresh is not None and fresh["claim_token"] is None


@pytest.mark.skipif(TEST_DATABASE != "postgres",
                    reason="two processes on one database: PostgreSQL only")
async def test_two_schedulers_fire_each_tick_exactly_once(
    tmp_path: Path, new_database: NewDatabase
) -> None:
    """Two applications (two connection pools: what two worker processes have) on one
    PostgreSQL database race on the same due crons, tick after tick."""
    url = new_database()
    apps = []
    for name in ("one", "two"):
        root = tmp_path / name
        root.mkdir()
        settings = Settings.from_env({"data_dir": str(root / "data"), "database_url": url},
                                     environ={})
        app = Dockyard(load_project(_project(root)), settings)
        await app.start()
        await app.scheduler.stop()
        apps.append(app)
    one, two = apps
    claims: Counter[bool] = Counter()
    for app in apps:
        def spy(repo_claim: Any = app.crons.repo.claim) -> Any:
            async def claim(*args: Any) -> bool:
                won: bool = await repo_claim(*args)
                claims[won] += 1
                return won
            return claim
        app.crons.repo.claim = spy()  # type: ignore[method-assign]
    try:
        thread = await one.threads.create(T)
        crons = [await one.crons.create(T, thread["thread_id"], schedule="* * * * *",
                                        payload={"assistant_id": "g", "input": {"steps": []}})
                 for _ in range(5)]
        crons += [await one.crons.create(T, None, schedule="* * * * *", payload={
            "assistant_id": "g", "input": {"steps": []}}, on_run_completed="keep")
            for _ in range(5)]
        rounds = 6
        for _ in range(rounds):
            for cron in crons:
                await _make_due(one, cron["cron_id"])
            # Each process runs its scheduler's pass at the same moment, twice over.
            counts = await asyncio.gather(one.scheduler.tick(), two.scheduler.tick(),
                                          one.crons.fire_due(), two.crons.fire_due())
            assert sum(counts) == len(crons), counts
        per_cron: Counter[str] = Counter()
        for cron in crons:
            per_cron[cron["cron_id"]] = len(await _cron_runs(one, cron["cron_id"]))
        assert set(per_cron.values()) == {rounds}, per_cron
        # The passes did race: most claims found the tick already taken by another.
        assert claims[False] > 0 and claims[True] == rounds * len(crons), claims
    finally:
        for app in apps:
            await app.stop()


async def test_stop_ends_the_scheduler_even_as_it_is_woken(dock: Dockyard) -> None:
    """A cancel that lands as the wake-up event fires must still end the loop (Python 3.11's
    wait_for would swallow it and the loop would run on, hanging shutdown)."""
    from dockyard.services.cron_scheduler import CronScheduler

    for _ in range(10):
        scheduler = CronScheduler(dock.crons, poll_seconds=30)
        await scheduler.start()
        await asyncio.sleep(0.02)  # asleep on its wake-up event
        scheduler.notify()
        await asyncio.wait_for(scheduler.stop(), timeout=10)
