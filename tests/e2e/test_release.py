"""Serving revisions side by side, end to end against a real server (SQLite or PostgreSQL):
deploy v1 and promote it; a v1 thread waits at an interrupt; deploy v2 (with an env var) and
promote it; new threads run v2 while the v1 thread resumes on v1; a canary splits new threads
exactly as its hash says; a failing canary is rolled back automatically; `dockyard rollback`
restores the previous revision; a revision's own requirement is installed in its own
environment, and one that cannot be installed fails the revision, which never serves."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.services.deployments import in_canary
from tests.e2e.conftest import DOCKYARD, Server, make_server

GRAPH = '''
import os
import time
from typing import TypedDict
from langgraph.graph import StateGraph, START, END
from langgraph.types import interrupt
{extra_import}
VERSION = "{version}"

class S(TypedDict, total=False):
    trail: list[str]
    ask: bool
    sleep: float

def first(state):
    time.sleep(state.get("sleep", 0))
    if VERSION == "broken":
        raise RuntimeError("this revision always fails")
    return {{"trail": [f"first:{{VERSION}}:{{os.environ.get('GREETING', '-')}}{extra_value}"]}}

def approve(state):
    if state.get("ask"):
        answer = interrupt("approve?")
        return {{"trail": state["trail"] + [f"approve:{{VERSION}}:{{answer}}"]}}
    return {{}}

b = StateGraph(S)
b.add_node("first", first)
b.add_node("approve", approve)
b.add_edge(START, "first"); b.add_edge("first", "approve"); b.add_edge("approve", END)
graph = b.compile()
'''


def write_project(path: Path, version: str, *, dependencies: list[str] | None = None,
                  extra_import: str = "", extra_value: str = "",
                  smoke: dict[str, Any] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "agent.py").write_text(GRAPH.format(version=version, extra_import=extra_import,
                                                extra_value=extra_value))
    config: dict[str, Any] = {"graphs": {"agent": "./agent.py:graph"}}
    if dependencies is not None:
        config["dependencies"] = dependencies
    if smoke is not None:
        config["dockyard"] = {"smoke": smoke}
    (path / "langgraph.json").write_text(json.dumps(config))
    return path


def make_wheel(dest: Path, name: str, version: str, module_source: str) -> Path:
    """A minimal pure-Python wheel, written by hand (no build backend, no network)."""
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": module_source.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 .encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "dockyard_e2e_extra", "1.0", 'VALUE = "extra-1.0"\n')
    server = make_server(
        tmp_path, project=write_project(tmp_path / "base", "base"),
        DOCKYARD_REVISION_PIP_ARGS=f"--no-index --find-links {wheels}",
    )
    server.start()
    yield server
    server.stop()


def cli(srv: Server, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DOCKYARD), *argv, "--server", srv.url], cwd=cwd,
                          capture_output=True, text=True, timeout=180, check=False)


def deploy(srv: Server, project: Path) -> str:
    out = cli(srv, "deploy", cwd=project)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[1]


def run_thread(srv: Server, payload: dict[str, Any], thread_id: str | None = None,
               ) -> tuple[str, Any]:
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        if thread_id is None:
            thread_id = c.post("/threads", json={}).json()["thread_id"]
        resp = c.post(f"/threads/{thread_id}/runs/wait",
                      json={"assistant_id": "agent", **payload})
        assert resp.status_code == 200, resp.text
        return thread_id, resp.json()


def test_revisions_side_by_side(srv: Server, tmp_path: Path) -> None:
    v1 = deploy(srv, write_project(tmp_path / "v1", "v1"))
    promoted = cli(srv, "promote", v1, cwd=tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    assert f"current: {v1}" in promoted.stdout

    waiting, out = run_thread(srv, {"input": {"ask": True}})
    assert out["trail"] == ["first:v1:-"] and "__interrupt__" in out

    v2 = deploy(srv, write_project(tmp_path / "v2", "v2"))
    env = cli(srv, "revisions", "env", v2, "GREETING=hello", cwd=tmp_path)
    assert env.returncode == 0, env.stderr
    listed = cli(srv, "revisions", "env", v2, cwd=tmp_path)
    assert json.loads(listed.stdout)["name"] == "GREETING" and "hello" not in listed.stdout
    assert cli(srv, "promote", v2, cwd=tmp_path).returncode == 0

    # new threads run v2 (with its env), the waiting v1 thread resumes on v1
    _, fresh = run_thread(srv, {"input": {"ask": False}})
    assert fresh["trail"] == ["first:v2:hello"]
    _, resumed = run_thread(srv, {"command": {"resume": "yes"}}, thread_id=waiting)
    assert resumed["trail"] == ["first:v1:-", "approve:v1:yes"]

    # a stateless run goes to the current revision too
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        stateless = c.post("/runs/wait", json={"assistant_id": "agent", "input": {}})
        assert stateless.json()["trail"] == ["first:v2:hello"], stateless.text

    # rollback: v1 serves new threads again
    back = cli(srv, "rollback", "--reason", "v2 is wrong", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert f"current: {v1}" in back.stdout
    _, again = run_thread(srv, {"input": {}})
    assert again["trail"] == ["first:v1:-"]
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        status = c.get("/deployment").json()
        assert [e["action"] for e in status["events"]][:3] == ["rollback", "promote", "promote"]
        assert status["events"][0]["reason"] == "v2 is wrong"
        # and once more back: to the server's own project
        assert c.post("/deployment/rollback", json={}).json()["current_revision_id"] is None
    _, base = run_thread(srv, {"input": {}})
    assert base["trail"] == ["first:base:-"]


def test_canary_split_and_auto_rollback(srv: Server, tmp_path: Path) -> None:
    v1 = deploy(srv, write_project(tmp_path / "v1", "v1"))
    assert cli(srv, "promote", v1, cwd=tmp_path).returncode == 0
    v2 = deploy(srv, write_project(tmp_path / "v2", "v2"))
    canary = cli(srv, "promote", v2, "--canary", "30%", cwd=tmp_path)
    assert canary.returncode == 0, canary.stderr
    assert f"canary:  {v2} (30% of new threads)" in canary.stdout

    # each new thread lands where the hash of its id says, and both sides get threads
    seen = {"v1": 0, "v2": 0}
    for _ in range(16):
        tid, out = run_thread(srv, {"input": {}})
        version = out["trail"][0].split(":")[1]
        assert version == ("v2" if in_canary(tid, 30) else "v1"), (tid, out)
        seen[version] += 1
    assert seen["v1"] and seen["v2"]

    # a broken canary is rolled back by the worker processes' canary check
    broken = deploy(srv, write_project(tmp_path / "broken", "broken"))
    auto = cli(srv, "promote", broken, "--canary", "50", "--max-error-rate", "0.5",
               "--min-runs", "3", cwd=tmp_path)
    assert auto.returncode == 0, auto.stderr
    failures = 0
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        while failures < 3:
            tid = c.post("/threads", json={}).json()["thread_id"]
            if not in_canary(tid, 50):
                continue
            resp = c.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "agent",
                                                               "input": {}})
            assert "always fails" in resp.text, resp.text
            failures += 1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            status = c.get("/deployment").json()
            if status["canary_revision_id"] is None:
                break
            time.sleep(0.2)
        assert status["canary_revision_id"] is None, status
        event = status["events"][0]
        assert event["action"] == "auto_rollback" and event["from_revision_id"] == broken
        assert "error rate 100%" in event["reason"] and event["actor"] == "auto-rollback"
        stats = {s["role"]: s for s in c.get("/deployment/stats").json()}
        assert stats["current"]["revision_id"] == v1 and stats["current"]["errors"] == 0
    # every new thread is on v1 again
    for _ in range(4):
        _, out = run_thread(srv, {"input": {}})
        assert out["trail"] == ["first:v1:-"]


def test_threads_migrate(srv: Server, tmp_path: Path) -> None:
    v1 = deploy(srv, write_project(tmp_path / "v1", "v1"))
    assert cli(srv, "promote", v1, cwd=tmp_path).returncode == 0
    waiting, _ = run_thread(srv, {"input": {"ask": True}})
    v2 = deploy(srv, write_project(tmp_path / "v2", "v2"))
    dry = cli(srv, "threads", "migrate", waiting, "--to", v2, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and f"would move {waiting} from {v1} to {v2}" in dry.stdout
    _, still = run_thread(srv, {"command": {"resume": "a"}}, thread_id=waiting)
    assert still["trail"][-1] == "approve:v1:a"  # the dry run moved nothing
    waiting2, _ = run_thread(srv, {"input": {"ask": True}})
    moved = cli(srv, "threads", "migrate", "--from", v1, "--to", v2, cwd=tmp_path)
    assert moved.returncode == 0 and f"moved {waiting2} from {v1}" in moved.stdout
    _, out = run_thread(srv, {"command": {"resume": "b"}}, thread_id=waiting2)
    assert out["trail"] == ["first:v1:-", "approve:v2:b"]  # resumed on the new code


def test_revision_requirements(srv: Server, tmp_path: Path) -> None:
    # a requirement the server does not have, installed in the revision's own environment
    extra = write_project(tmp_path / "extra", "x", dependencies=[".", "dockyard_e2e_extra==1.0"],
                          extra_import="import dockyard_e2e_extra",
                          extra_value=":{dockyard_e2e_extra.VALUE}")
    rev = deploy(srv, extra)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        log = c.get(f"/revisions/{rev}").json()["build_log"]
    assert "building environment" in log and "dockyard_e2e_extra==1.0" in log, log
    assert "verified in" in log and "graphs agent" in log, log
    assert cli(srv, "promote", rev, cwd=tmp_path).returncode == 0
    _, out = run_thread(srv, {"input": {}})
    assert out["trail"] == ["first:x:-:extra-1.0"]

    # one that cannot be installed fails the revision with pip's reason; it never serves
    bad = write_project(tmp_path / "bad", "bad", dependencies=[".", "dockyard-no-such-dist==9.9"])
    failed = cli(srv, "deploy", cwd=bad)
    assert failed.returncode != 0
    assert "dockyard-no-such-dist" in failed.stderr and "failed verification" in failed.stderr
    # a smoke input that fails fails the revision too (the broken version raises in a node)
    smoked = cli(srv, "deploy", cwd=write_project(tmp_path / "smoked", "broken",
                                                  smoke={"agent": {"input": {}}}))
    assert smoked.returncode != 0
    assert ("the smoke input of graph 'agent' failed: RuntimeError: this revision always fails"
            in smoked.stderr), smoked.stderr
    ok_smoke = cli(srv, "deploy", cwd=write_project(tmp_path / "smoke-ok", "v9",
                                                    smoke={"agent": {"input": {"ask": True}}}))
    assert ok_smoke.returncode == 0, ok_smoke.stderr
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        bad_id = next(r["revision_id"] for r in c.get("/revisions").json()
                      if r["status"] == "failed")
        refused = c.post("/deployment/promote", json={"revision_id": bad_id})
        assert refused.status_code == 409 and refused.json()["code"] == "revision_not_ready"
        assert c.get("/deployment").json()["current_revision_id"] == rev


def test_build_image_context_of_a_stored_revision(srv: Server, tmp_path: Path) -> None:
    rev = deploy(srv, write_project(tmp_path / "v1", "v1"))
    out = tmp_path / "ctx"
    built = subprocess.run([str(DOCKYARD), "build", "--revision", rev, "--server", srv.url,
                            "-o", str(out)], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        content_hash = c.get(f"/revisions/{rev}").json()["content_hash"]
    # the image holds exactly the revision's files: the same content hash
    assert f"content hash {content_hash[:12]}" in built.stderr, built.stderr
    assert (out / "Dockerfile").is_file() and (out / "project" / "agent.py").is_file()
    assert 'VERSION = "v1"' in (out / "project" / "agent.py").read_text()
    missing = subprocess.run([str(DOCKYARD), "build", "--revision", "nope", "--server", srv.url],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             check=False)
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr, missing.stderr
