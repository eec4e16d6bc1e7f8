"""Restart PostgreSQL in the middle of a burst: no run is lost and none runs twice.

Runs caught mid-step by the restart are handed back to the queue and resume from their last
checkpoint, so each run's state holds every node exactly once. Only a node that was executing
at the moment of the restart may execute again (at-least-once for the in-flight step).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_sync_client

from tests.chaos.topology import Topology

pytestmark = pytest.mark.e2e

RUNS = 60
CONCURRENCY = 4  # per worker; two workers


def _restart_postgres() -> None:
    ctl = shutil.which("pg_ctlcluster")
    if ctl is None:
        pytest.skip("pg_ctlcluster is not available: cannot restart the local PostgreSQL")
    version = next(iter(sorted(p.name for p in Path("/etc/postgresql").iterdir())))
    subprocess.run([ctl, "--skip-systemctl-redirect", version, "main", "restart"], check=True,
                   timeout=60)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    (tmp_path / "nodes.log").touch()
    topo = Topology.create(tmp_path, DOCKYARD_LEASE_SECONDS="3",
                           DOCKYARD_E2E_LOG=str(tmp_path / "nodes.log"))
    try:
        yield topo
    finally:
        topo.stop()


def test_postgres_restart_during_a_burst(topology: Topology, tmp_path: Path) -> None:
    api = topology.add_api()
    topology.add_worker(CONCURRENCY)
    topology.add_worker(CONCURRENCY)
    topology.wait_ready()
    log = tmp_path / "nodes.log"
    client = get_sync_client(url=api.url or "")
    try:
        runs = []
        for _ in range(RUNS):
            thread = client.threads.create()
            runs.append(client.runs.create(thread["thread_id"], "ledger", input={"steps": []}))
        deadline = time.monotonic() + 30
        while log.read_text().count(" l3\n") < RUNS // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        _restart_postgres()

        statuses: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while len(statuses) < RUNS and time.monotonic() < deadline:
            for run in runs:
                if run["run_id"] in statuses:
                    continue
                try:
                    row = client.runs.get(run["thread_id"], run["run_id"])
                except httpx.HTTPError:
                    time.sleep(0.2)  # the API reconnects to the restarted server
                    continue
                if row["status"] not in ("pending", "running"):
                    statuses[run["run_id"]] = row["status"]
            time.sleep(0.1)
        assert Counter(statuses.values()) == {"success": RUNS}, statuses
        for run in runs:
            state = client.threads.get_state(run["thread_id"])
            assert state["values"]["steps"] == ["l1", "l2", "l3"], run["run_id"]
    except BaseException:
        print(topology.logs()[-20000:])
        raise
    finally:
        client.close()

    done = Counter(tuple(line.split()) for line in log.read_text().splitlines())
    for run in runs:
        for node in ("l1", "l2", "l3"):
            assert done[(run["run_id"], node)] >= 1, (run["run_id"], node)
    # Re-executions are limited to steps in flight at the restart (at most one per slot).
    repeats = sum(count - 1 for count in done.values())
    assert repeats <= 2 * CONCURRENCY, done
