"""Persisted run traces and the queue overview through the HTTP API of a real `dockyard dev`:
a failing node's stack, the branch taken, LLM calls, replays from a run's checkpoints (the
public-API recipe the debugger uses), tenancy and roles."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DOCKYARD, PROJECT, Server, make_server

pytestmark = pytest.mark.e2e


def _run(http: httpx.Client, graph: str, body: dict[str, Any], thread_id: str | None = None
         ) -> tuple[str, str]:
    tid = thread_id or http.post("/threads", json={}).json()["thread_id"]
    r = http.post(f"/threads/{tid}/runs/wait", json={"assistant_id": graph, **body})
    assert r.status_code == 200, r.text
    return tid, str(r.headers["content-location"].rsplit("/", 1)[1])


def test_a_failing_node_has_its_stack_and_the_branch_taken(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        tid, rid = _run(http, "failing", {"input": {}})
        trace = http.get(f"/threads/{tid}/runs/{rid}/trace").json()
        assert trace["run"]["status"] == "error"
        assert trace["trace"]["base_checkpoint_id"] is None  # the thread's first run
        assert trace["trace"]["totals"]["errors"] == 1
        ok, boom = trace["spans"]
        assert (ok["name"], ok["status"], ok["metadata"]["next"]) == ("ok", "success", ["boom"])
        assert boom["status"] == "error" and boom["metadata"]["error"]["type"] == "ValueError"
        assert "detail" not in boom  # listings stay small
        span = http.get(f"/threads/{tid}/runs/{rid}/trace/spans/{boom['seq']}").json()
        assert 'raise ValueError("node exploded on purpose")' in span["detail"]["traceback"]
        assert span["detail"]["input"] == {"steps": ["ok"]}
        assert http.get(f"/threads/{tid}/runs/{rid}/trace/spans/99").status_code == 404
        assert http.get(f"/threads/{tid}/runs/{rid}/trace?limit=1").json()["next_offset"] == 1
        assert http.get(f"/threads/{tid}/runs/{rid}/trace?kind=bogus").status_code == 422


def test_llm_calls_are_spans_of_their_node(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        tid, rid = _run(http, "chat", {"input": {"messages": [{"role": "user", "content": "hi"}]}})
        spans = http.get(f"/threads/{tid}/runs/{rid}/trace").json()["spans"]
        node, llm = spans
        assert (node["kind"], llm["kind"], llm["parent_seq"]) == ("node", "llm", node["seq"])
        detail = http.get(f"/threads/{tid}/runs/{rid}/trace/spans/{llm['seq']}").json()["detail"]
        assert detail["output"]["content"] == "hello there from the fake model"
        only_llm = http.get(f"/threads/{tid}/runs/{rid}/trace?kind=llm").json()["spans"]
        assert [s["kind"] for s in only_llm] == ["llm"]


def test_replays_from_a_runs_checkpoints(server: Server) -> None:
    """The debugger's two replays, through the public API: recorded outputs up to a step (a
    run from the run's checkpoint of that step: earlier nodes do not run again), and a new
    input from the run's base checkpoint."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        tid, first = _run(http, "three_steps", {"input": {"steps": []}})
        tid, rid = _run(http, "three_steps", {"input": {"steps": ["second"]}}, tid)
        trace = http.get(f"/threads/{tid}/runs/{rid}/trace").json()
        a = trace["spans"][0]
        base = trace["trace"]["base_checkpoint_id"]
        before = http.post(f"/threads/{tid}/history", json={"limit": 1, "metadata": {
            "run_id": first}}).json()[0]
        assert base == before["checkpoint_id"]  # the first run's last checkpoint

        # Recorded up to a's step, live from b: only b and c run.
        cp = http.post(f"/threads/{tid}/history", json={"limit": 1, "metadata": {
            "run_id": rid, "step": a["step"]}}).json()[0]
        assert cp["values"]["steps"][-1] == "a"
        _, replay = _run(http, "three_steps", {"input": None, "checkpoint_id": cp["checkpoint_id"],
                                               "metadata": {"replay_of": rid}}, tid)
        names = [s["name"] for s in http.get(f"/threads/{tid}/runs/{replay}/trace").json()["spans"]]
        assert names == ["b", "c"]

        # A modified input from the base checkpoint: the whole run again, on a new branch.
        _, changed = _run(http, "three_steps", {"input": {"steps": ["changed"]},
                                                "checkpoint_id": base}, tid)
        state = http.get(f"/threads/{tid}/state").json()
        assert state["values"]["steps"][-4:] == ["changed", "a", "b", "c"]
        assert "second" not in state["values"]["steps"]
        t2 = http.get(f"/threads/{tid}/runs/{changed}/trace").json()
        assert [s["name"] for s in t2["spans"]] == ["a", "b", "c"]
        assert t2["trace"]["base_checkpoint_id"] == base


def test_queue_overview_shows_running_runs_and_failures(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        _run(http, "failing", {"input": {}})
        tid = http.post("/threads", json={}).json()["thread_id"]
        run = http.post(f"/threads/{tid}/runs", json={"assistant_id": "slow",
                                                      "input": {"delay": 3}}).json()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            q = http.get("/queue").json()
            if any(r["run_id"] == run["run_id"] for r in q["running"]):
                break
            time.sleep(0.05)
        mine = next(r for r in q["running"] if r["run_id"] == run["run_id"])
        assert mine["worker_id"] and mine["lease_until"]
        assert q["totals"]["running"] >= 1
        assert any(w["worker_id"] == mine["worker_id"] for w in q["workers"])
        assert {"error": "ValueError", "message": "node exploded on purpose"} in [
            f["error"] for f in q["failures"]]
        # A long run's spans are in storage while it runs (flushed every second).
        live: list[tuple[str, str]] = []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and len(live) < 2:
            time.sleep(0.2)
            spans = http.get(f"/threads/{tid}/runs/{run['run_id']}/trace").json()["spans"]
            live = [(s["name"], s["status"]) for s in spans]
        assert live == [("first", "success"), ("sleepy", "running")]
        http.post(f"/threads/{tid}/runs/{run['run_id']}/cancel")


def _cli(server: Server, *args: str) -> str:
    out = subprocess.run(
        [str(DOCKYARD), *args, "--project", str(PROJECT), "--data-dir", str(server.data_dir)],
        env=server.env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def test_traces_and_queue_obey_tenancy_and_roles(tmp_path: Path) -> None:
    srv = make_server(tmp_path, DOCKYARD_AUTH="keys")
    _cli(srv, "tenants", "create", "acme")
    dev = _cli(srv, "keys", "create", "--tenant", "acme", "--role", "developer")
    viewer = _cli(srv, "keys", "create", "--tenant", "acme", "--role", "viewer")
    other = _cli(srv, "keys", "create", "--tenant", "default", "--role", "admin")
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30, headers={"x-api-key": dev}) as http:
            tid, rid = _run(http, "failing", {"input": {}})
        path = f"/threads/{tid}/runs/{rid}/trace"
        assert httpx.get(srv.url + path).status_code == 401
        as_viewer = httpx.get(srv.url + path, headers={"x-api-key": viewer})
        assert as_viewer.status_code == 200 and len(as_viewer.json()["spans"]) == 2
        assert httpx.get(srv.url + path, headers={"x-api-key": other}).status_code == 404
        assert httpx.get(srv.url + path + "/spans/1", headers={"x-api-key": other}
                         ).status_code == 404
        q = httpx.get(srv.url + "/queue", headers={"x-api-key": viewer}).json()
        assert [f["run_id"] for f in q["failures"]] == [rid]
        assert httpx.get(srv.url + "/queue", headers={"x-api-key": other}).json()["failures"] == []
    finally:
        srv.stop()
