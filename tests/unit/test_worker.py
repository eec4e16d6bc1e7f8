"""Worker leases: a dead worker's run is re-claimed and resumed; a crash-looping run gives up;
graceful shutdown hands unfinished runs back without counting an attempt."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Settings, load_project
from dockyard.services.core import Dockyard

GRAPHS = """
import asyncio, operator
from typing import Annotated, TypedDict
from langgraph.graph import StateGraph, START, END

class S(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    pause: float

def step(name):
    async def node(s):
        await asyncio.sleep(s.get("pause", 0))
        return {"steps": [name]}
    return node

b = StateGraph(S)
for n in ("s1", "s2", "s3"):
    b.add_node(n, step(n))
b.add_edge(START, "s1"); b.add_edge("s1", "s2"); b.add_edge("s2", "s3"); b.add_edge("s3", END)
graph = b.compile()
"""


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Dockyard]:
    (tmp_path / "g.py").write_text(GRAPHS)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    dockyard = Dockyard(load_project(tmp_path),
                        Settings.from_env({"data_dir": str(tmp_path / "data")}, environ={}))
    await dockyard.start()
    yield dockyard
    await dockyard.stop()


async def _status(app: Dockyard, run_id: str) -> dict[str, Any]:
    row = await app.runs.queue.get("default", run_id)
    assert row is not None
    return row


async def _wait_status(app: Dockyard, run_id: str, *statuses: str) -> dict[str, Any]:
    for _ in range(400):
        row = await _status(app, run_id)
        if row["status"] in statuses:
            return row
        await asyncio.sleep(0.025)
    raise AssertionError(f"run {run_id} stayed {row['status']}")


async def _forge_dead_claim(app: Dockyard, attempts: int) -> dict[str, Any]:
    """A run claimed by a worker that then vanished: status running, lease in the past."""
    thread = await app.threads.create("default")
    await app.pool.stop(grace_seconds=0)  # nobody claims it from under the forgery
    run = await app.runs.create("default", thread["thread_id"], {"assistant_id": "g",
                                                                 "input": {"steps": []}})
    await app.storage.execute(
        "UPDATE runs SET status = 'running', worker_id = 'ghost', attempts = ?,"
        " lease_until = '2000-01-01T00:00:00+00:00' WHERE run_id = ?",
        (attempts, run["run_id"]),
    )
    return run


async def test_expired_lease_is_reclaimed_and_completed(app: Dockyard) -> None:
    run = await _forge_dead_claim(app, attempts=1)
    pool = type(app.pool)(app.deps, concurrency=2, lease_seconds=1.0, embedded=False)
    await pool.start()  # a second worker starting up sweeps expired leases
    try:
        row = await _wait_status(app, run["run_id"], "success", "error")
        assert row["status"] == "success"
        assert row["attempts"] == 2
        thread = await app.threads.get("default", run["thread_id"])
        assert thread["values"]["steps"] == ["s1", "s2", "s3"]
    finally:
        await pool.stop()


async def test_run_that_keeps_losing_its_worker_is_failed_with_reason(app: Dockyard) -> None:
    run = await _forge_dead_claim(app, attempts=3)
    pool = type(app.pool)(app.deps, concurrency=2, lease_seconds=1.0, embedded=False,
                          max_attempts=3)
    requeued, failed = await pool.sweep_leases()
    assert (requeued, failed) == ([], [run["run_id"]])
    row = await _status(app, run["run_id"])
    assert row["status"] == "error"
    assert row["error"]["error"] == "WorkerLost"
    assert "3 times" in row["error"]["message"]


async def test_live_lease_is_not_stolen(app: Dockyard) -> None:
    thread = await app.threads.create("default")
    run = await app.runs.create("default", thread["thread_id"],
                                {"assistant_id": "g", "input": {"steps": [], "pause": 0.3}})
    await _wait_status(app, run["run_id"], "running")
    other = type(app.pool)(app.deps, concurrency=1, lease_seconds=30.0, embedded=False)
    assert await other.sweep_leases() == ([], [])
    row = await _wait_status(app, run["run_id"], "success")
    assert row["attempts"] == 1


async def test_graceful_stop_releases_unfinished_runs_and_they_resume(app: Dockyard) -> None:
    thread = await app.threads.create("default")
    run = await app.runs.create("default", thread["thread_id"],
                                {"assistant_id": "g", "input": {"steps": [], "pause": 0.4}})
    # Stop while s2 runs: s1 is checkpointed, s2 is not.
    for _ in range(200):
        state = await app.threads.state("default", thread["thread_id"])
        if state["values"].get("steps") == ["s1"]:
            break
        await asyncio.sleep(0.02)
    await app.pool.stop(grace_seconds=0.05)
    row = await _status(app, run["run_id"])
    assert row["status"] == "pending"
    assert row["attempts"] == 0  # a graceful release is not a failed attempt
    successor = type(app.pool)(app.deps, concurrency=2, embedded=False)
    await successor.start()
    try:
        row = await _wait_status(app, run["run_id"], "success", "error")
        assert row["status"] == "success"
        thread_row = await app.threads.get("default", thread["thread_id"])
        assert thread_row["values"]["steps"] == ["s1", "s2", "s3"]  # s1 did not run again
    finally:
        await successor.stop()


async def _run_to_end(app: Dockyard, thread_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    run = await app.runs.create("default", thread_id, {"assistant_id": "g", **payload})
    row = await _wait_status(app, run["run_id"], "success", "error", "interrupted")
    assert row["status"] in ("success", "interrupted"), row
    return row


async def test_a_first_claim_reads_only_the_graphs_own_checkpoint(
    app: Dockyard, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No resume check (nothing of the run ran before) and no final state read (the run's
    stream reported its last checkpoint); the trace's base comes from the stream too."""
    thread = await app.threads.create("default")
    first = await _run_to_end(app, thread["thread_id"], {"input": {"steps": []}})
    saver = app.storage.checkpointer
    reads: list[Any] = []
    real = saver.aget_tuple

    async def counted(config: Any) -> Any:
        reads.append(config)
        return await real(config)

    monkeypatch.setattr(saver, "aget_tuple", counted)
    second = await _run_to_end(app, thread["thread_id"], {"input": {"steps": ["again"]}})
    assert len(reads) == 1
    monkeypatch.undo()
    thread_row = await app.threads.get("default", thread["thread_id"])
    assert thread_row["status"] == "idle"
    assert thread_row["values"]["steps"] == ["s1", "s2", "s3", "again", "s1", "s2", "s3"]
    history = await app.storage.checkpointer.aget_tuple(
        {"configurable": {"thread_id": thread["thread_id"], "checkpoint_ns": ""}})
    assert history is not None and history.metadata["run_id"] == second["run_id"]
    bases = [(await app.deps.traces.header("default", r["run_id"]) or {}).get("base_checkpoint_id")
             for r in (first, second)]
    of_first = [c async for c in app.storage.checkpointer.alist(
        {"configurable": {"thread_id": thread["thread_id"]}}, filter={"run_id": first["run_id"]},
        limit=1)]
    assert bases == [None, of_first[0].config["configurable"]["checkpoint_id"]]


async def test_a_run_that_stops_at_an_interrupt_reads_its_final_state(app: Dockyard) -> None:
    thread = await app.threads.create("default")
    row = await _run_to_end(app, thread["thread_id"],
                            {"input": {"steps": []}, "interrupt_before": ["s2"]})
    assert row["status"] == "interrupted"
    thread_row = await app.threads.get("default", thread["thread_id"])
    assert thread_row["status"] == "interrupted"
    assert thread_row["values"]["steps"] == ["s1"]
    row = await _run_to_end(app, thread["thread_id"], {"input": None})
    assert row["status"] == "success"
    thread_row = await app.threads.get("default", thread["thread_id"])
    assert thread_row["values"]["steps"] == ["s1", "s2", "s3"]


async def test_run_creation_wakes_other_processes_in_its_transaction(
    app: Dockyard, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The NOTIFY goes with the run's rows, in the one batch that writes them (PostgreSQL
    delivers it at commit): no transaction of its own."""
    kinds: list[str] = []
    alone: list[str] = []
    batches: list[list[str]] = []
    real_batch = app.storage.execute_batch

    def notify_statement(kind: str = "") -> tuple[str, tuple[str, ...]]:
        kinds.append(kind)
        return "SELECT ? AS woken", (kind,)

    async def notify(kind: str = "") -> None:
        alone.append(kind)

    async def batch(statements: Any) -> None:
        batches.append([sql for sql, _ in statements])
        await real_batch(statements)

    monkeypatch.setattr(app.storage, "notify_statement", notify_statement)
    monkeypatch.setattr(app.storage, "notify_runs", notify)
    monkeypatch.setattr(app.storage, "execute_batch", batch)
    monkeypatch.setattr(app.storage, "dialect", "postgres")  # as far as the wake-ups go
    thread = await app.threads.create("default")
    await app.runs.create("default", thread["thread_id"], {"assistant_id": "g",
                                                           "input": {"steps": []}})
    assert (kinds, alone) == (["base"], [])
    assert len(batches) == 1 and batches[0][0].startswith("INSERT INTO runs")
    assert batches[0][-1] == "SELECT ? AS woken"


_STUCK_NODE = """
import asyncio, sys, time
from dockyard.runtime.process import run_process

async def main():
    loop = asyncio.get_running_loop()
    loop.run_in_executor(None, time.sleep, 600)  # a synchronous node that does not return
    await asyncio.sleep(0.05)
    print("stopped", flush=True)
    return 3

sys.exit(run_process(main(), executor_wait=0.5))
"""


def test_a_worker_process_exits_after_its_stop_even_with_a_stuck_node_thread() -> None:
    """``run_process`` (``dockyard worker``, revision workers): once the process has stopped,
    a synchronous node's thread that never returns does not keep it alive (asyncio.run
    waited for it); the exit code is the main coroutine's, and the reason is logged."""
    done = subprocess.run([sys.executable, "-c", _STUCK_NODE], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout.strip() == "stopped"
    assert "exiting_with_busy_threads" in done.stderr


def test_run_process_waits_for_threads_that_finish() -> None:
    script = _STUCK_NODE.replace("time.sleep, 600)", "time.sleep, 0.1)").replace(
        "await asyncio.sleep(0.05)", "await asyncio.sleep(0)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3, done.stderr
    assert "exiting_with_busy_threads" not in done.stderr
