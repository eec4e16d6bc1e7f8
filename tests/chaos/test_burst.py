"""A burst: 5,000 runs queued at once for two tenants, drained by two real worker processes.

Tenancy has no API yet (every request is tenant ``default``), so the burst is queued at the
storage layer: 4,000 runs of tenant A, then 1,000 of tenant B, each on a thread of its own,
through ``RunQueue.insert`` into a fresh PostgreSQL database. Only then do two `dockyard
worker` processes start, so their claims race for the same rows (``FOR UPDATE SKIP LOCKED``).

The graph's one node appends ``<run_id> <pid>`` to a log file (``O_APPEND``: one atomic write
per line, whichever process writes it), so every execution is counted. Checked:

* none lost: every run ends ``success``, with one claim (``attempts = 1``), and wrote its line;
* none run twice: every run id appears in the log exactly once;
* no starvation, judged by order, not time: in the order runs completed (``ended_at``),
  tenant B's last run finishes before tenant A's 2,500th. FIFO would finish all 4,000 runs of
  A first; round-robin between tenants finishes B's 1,000 among the first ~2,000.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from dockyard.services.ids import new_id
from dockyard.storage import create_storage
from dockyard.storage.queue import RunQueue
from dockyard.storage.resources import Threads
from tests.chaos.topology import Topology

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

N_A, N_B = 4000, 1000
TENANT_A, TENANT_B = "tenant-a", "tenant-b"
GRAPH_ID = "burst"
DRAIN_DEADLINE_S = 240.0  # a hang guard, not a performance assertion

GRAPH = '''
import os
from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

LOG = os.environ["DOCKYARD_BURST_LOG"]
_fd = None


class S(TypedDict, total=False):
    n: int


def record(state: S, config: RunnableConfig) -> dict:
    global _fd
    if _fd is None:
        _fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{config['configurable']['run_id']} {os.getpid()}\\n".encode())
    return {"n": state.get("n", 0) + 1}


builder = StateGraph(S)
builder.add_node("record", record)
builder.add_edge(START, "record")
builder.add_edge("record", END)
graph = builder.compile()
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "burst.py").write_text(GRAPH)
    (root / "langgraph.json").write_text(json.dumps({"graphs": {GRAPH_ID: "./burst.py:graph"}}))
    return root


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    log = tmp_path / "executions.log"
    log.touch()
    topo = Topology.create(tmp_path, DOCKYARD_BURST_LOG=str(log))
    try:
        yield topo
    finally:
        topo.stop()


async def _fill(database_url: str, tmp_path: Path) -> dict[str, str]:
    """Queue A's runs, then B's; each on a new thread of its tenant. Returns run_id → tenant."""
    storage = create_storage(database_url, default_path=tmp_path / "unused.sqlite")
    await storage.open()
    queue, threads = RunQueue(storage), Threads(storage)
    tenants: dict[str, str] = {}

    async def one(tenant: str) -> None:
        thread_id, run_id = new_id(), new_id()
        await threads.insert(tenant, thread_id, {"graph_id": GRAPH_ID})
        await queue.insert(tenant, {
            "run_id": run_id, "thread_id": thread_id, "assistant_id": new_id(),
            "assistant_version": 1, "graph_id": GRAPH_ID, "metadata": {},
            "kwargs": {"input": {"n": 0}}, "multitask_strategy": "enqueue",
        })
        tenants[run_id] = tenant

    try:
        # A few inserts in flight at a time (group commit), batch after batch: every run of
        # A is older than every run of B.
        for tenant, n in ((TENANT_A, N_A), (TENANT_B, N_B)):
            for start in range(0, n, 16):
                await asyncio.gather(*(one(tenant) for _ in range(min(16, n - start))))
    finally:
        await storage.close()
    return tenants


def _status_counts(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, int]:
    rows = conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
    return {str(status): int(str(n)) for status, n in rows}


def test_burst_of_5000_runs_two_tenants_none_lost_none_twice_b_not_starved(
    topology: Topology, project: Path, tmp_path: Path
) -> None:
    database_url = topology.env["DOCKYARD_DATABASE_URL"]
    tenants = asyncio.run(_fill(database_url, tmp_path))
    assert Counter(tenants.values()) == {TENANT_A: N_A, TENANT_B: N_B}

    workers = [topology.add_worker(concurrency=16, project=project) for _ in range(2)]
    started = time.monotonic()
    try:
        topology.wait_ready()
        with psycopg.connect(database_url, autocommit=True) as conn:
            while True:
                counts = _status_counts(conn)
                if not counts.get("pending") and not counts.get("running"):
                    break
                for w in workers:
                    assert w.proc is not None and w.proc.poll() is None, f"{w.name} died"
                if time.monotonic() - started > DRAIN_DEADLINE_S:
                    raise AssertionError(f"runs still queued after {DRAIN_DEADLINE_S}s: {counts}")
                time.sleep(0.5)
            drained_s = time.monotonic() - started
            rows = conn.execute(
                "SELECT run_id, tenant_id, status, attempts, worker_id FROM runs"
                " ORDER BY ended_at, run_id"
            ).fetchall()
    except BaseException:
        print(topology.logs()[-20000:])
        raise

    # None lost: every queued run finished successfully, on its first claim.
    assert {str(r[0]) for r in rows} == set(tenants)
    assert Counter(str(r[2]) for r in rows) == {"success": N_A + N_B}
    assert Counter(int(str(r[3])) for r in rows) == {1: N_A + N_B}

    # None run twice: one execution line per run, and no line for anything else.
    lines = (tmp_path / "executions.log").read_text().splitlines()
    executions = Counter(line.split()[0] for line in lines)
    assert set(executions) == set(tenants)
    twice = {run_id: n for run_id, n in executions.items() if n != 1}
    assert not twice, f"{len(twice)} runs executed more than once, e.g. {list(twice.items())[:3]}"
    pids = Counter(line.split()[1] for line in lines)
    assert len(pids) == 2, f"both workers should have executed runs: {pids}"

    # B not starved behind A, by completion order (1-based positions).
    order = [str(r[1]) for r in rows]
    b_positions = [i for i, tenant in enumerate(order, 1) if tenant == TENANT_B]
    a_positions = [i for i, tenant in enumerate(order, 1) if tenant == TENANT_A]
    a_2500th = a_positions[2499]
    print(
        f"\nburst: {N_A + N_B} runs drained in {drained_s:.1f}s by 2 workers "
        f"({(N_A + N_B) / drained_s:.0f} runs/s; executions per worker pid {dict(pids)}); "
        f"tenant B completion positions: first {b_positions[0]}, median "
        f"{statistics.median(b_positions):.0f}, last {b_positions[-1]} "
        f"(FIFO: {N_A + 1}..{N_A + N_B}); A's 2,500th completed at {a_2500th}"
    )
    assert b_positions[-1] < a_2500th, (
        f"tenant B's last run completed at position {b_positions[-1]}, after tenant A's "
        f"2,500th ({a_2500th}): B was starved behind A's burst"
    )
    assert statistics.median(b_positions) < N_A, "B's runs mostly waited for A's burst"
