"""Kill the server (SIGKILL) in the middle of a multi-step run; after a restart the run
completes from its last checkpoint and no finished node runs again."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client

from tests.e2e.conftest import make_server, node_counts

pytestmark = pytest.mark.e2e


def _wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_sigkill_mid_run_resumes_without_rerunning_finished_nodes(tmp_path: Path) -> None:
    log = tmp_path / "nodes.log"
    log.touch()
    srv = make_server(tmp_path, DOCKYARD_E2E_LOG=str(log))
    srv.start()
    try:
        client = get_sync_client(url=srv.url)
        thread = client.threads.create()
        run = client.runs.create(thread["thread_id"], "crashable", input={"steps": []})
        # Not "end c2": c2's checkpoint is written after the node returns, so a kill right
        # then re-runs c2. With durability=sync, c3 starts only once that checkpoint is saved.
        _wait_for(lambda: "start c3" in log.read_text())
        client.close()
        srv.stop(signal.SIGKILL)
        lines_at_kill = log.read_text().splitlines()
        assert "end c4" not in lines_at_kill, "the run finished before the kill; slow it down"

        srv.start()
        client = get_sync_client(url=srv.url)
        final = client.runs.join(thread["thread_id"], run["run_id"])
        assert final == {"steps": ["c1", "c2", "c3", "c4"]}
        assert client.runs.get(thread["thread_id"], run["run_id"])["status"] == "success"
        client.close()
    finally:
        srv.stop(signal.SIGKILL)

    starts, ends = node_counts(log.read_text().splitlines())
    finished_before_kill = set(node_counts(lines_at_kill)[1])
    assert {"c1", "c2"} <= finished_before_kill
    for node in finished_before_kill:
        assert starts[node] == 1, f"{node} finished before the crash but ran again"
    assert all(ends[n] == 1 for n in ("c1", "c2", "c3", "c4")), ends
