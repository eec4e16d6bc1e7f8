"""Revisions in the production topology: an API process and two worker processes on
PostgreSQL + Redis. Each worker process runs its own worker process per live revision; a run
of a revision streams and cancels through Redis like any run, and a thread pinned to v1 resumes
on v1 after v2 is promoted."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chaos.topology import Topology
from tests.e2e.conftest import DOCKYARD
from tests.e2e.test_release import write_project

pytestmark = pytest.mark.e2e


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    topo = Topology.create(tmp_path, DOCKYARD_LEASE_SECONDS="2",
                           DOCKYARD_SHUTDOWN_GRACE_SECONDS="0.5")
    try:
        yield topo
    finally:
        topo.stop()


def _deploy(url: str, project: Path) -> str:
    out = subprocess.run([str(DOCKYARD), "deploy", "--server", url], cwd=project,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[1]


def test_revisions_on_workers_with_redis(topology: Topology, tmp_path: Path) -> None:
    base = write_project(tmp_path / "base", "base")
    api = topology.add_api(project=base)
    topology.add_worker(project=base)
    topology.add_worker(project=base)
    topology.wait_ready()
    url = api.url or ""
    c = httpx.Client(base_url=url, timeout=60)
    try:
        v1 = _deploy(url, write_project(tmp_path / "v1", "v1"))
        assert c.post("/deployment/promote", json={"revision_id": v1}).status_code == 200

        waiting = c.post("/threads", json={}).json()["thread_id"]
        out = c.post(f"/threads/{waiting}/runs/wait",
                     json={"assistant_id": "agent", "input": {"ask": True}}).json()
        assert out["trail"] == ["first:v1:-"], out

        # a slow v1 run: streamed through the API from a revision worker, cancelled through Redis
        tid = c.post("/threads", json={}).json()["thread_id"]
        run = c.post(f"/threads/{tid}/runs", json={"assistant_id": "agent",
                                                   "input": {"sleep": 30}}).json()
        events: list[str] = []

        def follow() -> None:
            with httpx.Client(base_url=url, timeout=60) as s, s.stream(
                    "GET", f"/threads/{tid}/runs/{run['run_id']}/stream") as resp:
                events.extend(line for line in resp.iter_lines() if line.startswith("event:"))

        reader = threading.Thread(target=follow)
        reader.start()
        deadline = time.monotonic() + 20
        while c.get(f"/threads/{tid}/runs/{run['run_id']}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the run was not claimed"
            time.sleep(0.05)
        started = time.monotonic()
        cancel = c.post(f"/threads/{tid}/runs/{run['run_id']}/cancel?wait=1")
        assert cancel.status_code in (200, 202, 204), cancel.text
        reader.join(20)
        assert time.monotonic() - started < 10
        final = c.get(f"/threads/{tid}/runs/{run['run_id']}").json()
        assert final["status"] == "interrupted", final
        assert "event: metadata" in events and events[-1] == "event: end", events

        v2 = _deploy(url, write_project(tmp_path / "v2", "v2"))
        assert c.post("/deployment/promote", json={"revision_id": v2}).status_code == 200
        fresh = c.post("/runs/wait", json={"assistant_id": "agent", "input": {}}).json()
        assert fresh["trail"] == ["first:v2:-"], fresh
        resumed = c.post(f"/threads/{waiting}/runs/wait",
                         json={"assistant_id": "agent", "command": {"resume": "ok"}}).json()
        assert resumed["trail"] == ["first:v1:-", "approve:v1:ok"], resumed
    except Exception:
        print(topology.logs())
        raise
    finally:
        c.close()
    # v1 ran on both worker processes (each starts its own worker for a live revision); v2's
    # on the second may still be starting when the test ends (supervisors poll once a second).
    for worker in topology.workers:
        assert "revision_worker_started" in worker.log.read_text(), topology.logs()
