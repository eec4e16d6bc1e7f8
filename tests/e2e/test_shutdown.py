"""A stopped server exits even while a synchronous node still runs in one of its threads
(Python cannot stop a thread; ``asyncio.run`` waited for it): its run is released and resumes
after the restart."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client

from tests.e2e.conftest import make_server

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_dev_exits_after_its_stop_while_a_synchronous_node_sleeps(
    tmp_path: Path, sig: int,
) -> None:
    srv = make_server(tmp_path, DOCKYARD_SHUTDOWN_GRACE_SECONDS="0.5")
    srv.start()
    try:
        client = get_sync_client(url=srv.url)
        thread = client.threads.create()
        run = client.runs.create(thread["thread_id"], "blocking", input={"seconds": 600})
        deadline = time.monotonic() + 30
        while client.runs.get(thread["thread_id"], run["run_id"])["status"] != "running":
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        time.sleep(0.3)  # inside the node's sleep
        client.close()
        assert srv.proc is not None
        srv.proc.send_signal(sig)
        code = srv.proc.wait(timeout=60)  # before the fix: only once the node returned
        srv.proc = None
        assert code in (0, 130, -sig), code
        logs = srv.logs()
        assert "runs_released count=1" in logs
        if sig == signal.SIGINT:
            # (After SIGTERM uvicorn raises the signal again once it has shut down, and the
            # process ends by it.)
            assert "exiting_with_busy_threads" in logs
        # The released run waits for the next start, which takes it up again.
        srv.start()
        client = get_sync_client(url=srv.url)
        assert client.runs.get(thread["thread_id"], run["run_id"])["status"] in (
            "pending", "running")
        client.runs.cancel(thread["thread_id"], run["run_id"])
        client.close()
    finally:
        srv.stop(signal.SIGKILL)
