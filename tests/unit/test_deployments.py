"""Deployments on the selected database: routing and pinning, the canary hash, promote and
rollback (walking the history back), auto-rollback thresholds, thread migration, revision env
vars; and the requirements a revision's environment is built from."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import Conflict, InvalidInput, NotFound
from dockyard.runtime.revision_env import EnvBuildFailed, env_key, requirements
from dockyard.services.deployments import BASE, DeploymentService, in_canary, p95
from dockyard.storage.base import Storage, utcnow
from dockyard.storage.queue import RunQueue
from dockyard.storage.resources import Threads
from dockyard.storage.revisions import Revisions

T = "default"


async def _revision(db: Storage, *, graphs: list[str] | None = None, status: str = "ready",
                    tenant: str = T) -> str:
    rid = str(uuid.uuid4())
    await Revisions(db).insert({
        "revision_id": rid, "tenant_id": tenant, "content_hash": rid, "created_at": utcnow(),
        "status": status, "error": None if status == "ready" else "boom",
        "graphs": graphs if graphs is not None else ["agent"], "size_bytes": 1,
    }, b"archive")
    return rid


@pytest.fixture
def svc(db: Storage) -> DeploymentService:
    return DeploymentService(db, base_graphs=["agent", "other"])


def test_canary_hash_is_stable_and_uniform() -> None:
    ids = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(10_000)]
    share = sum(in_canary(i, 10) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert all(in_canary(i, 10) == in_canary(i, 10) for i in ids[:100])
    assert not any(in_canary(i, 0) for i in ids[:500])
    # a larger share keeps every thread of the smaller one (raising a canary moves no one back)
    assert all(in_canary(i, 30) for i in ids if in_canary(i, 10))


def test_p95() -> None:
    assert p95([]) is None
    assert p95([1.0]) == 1.0
    assert p95([float(i) for i in range(1, 101)]) == 95.0


async def test_routing_pins_threads(svc: DeploymentService, db: Storage) -> None:
    t1 = str(uuid.uuid4())
    assert await svc.route(T, t1, None, "agent") == (None, BASE)  # nothing promoted
    v1 = await _revision(db)
    await svc.promote(T, v1, actor="me")
    assert await svc.route(T, t1, None, "agent") == (v1, v1)
    assert await svc.route(T, t1, None, "other") == (None, BASE)  # v1 lacks that graph
    assert await svc.route(T, t1, v1, "agent") == (v1, None)  # pinned: no new pin
    assert await svc.route(T, t1, BASE, "agent") == (None, None)
    with pytest.raises(Conflict, match="has no graph 'other'"):
        await svc.route(T, t1, v1, "other")
    # another tenant sees nothing of this one's deployment
    assert await svc.route("acme", t1, None, "agent") == (None, BASE)


async def test_promote_canary_and_rollback_walk(svc: DeploymentService, db: Storage) -> None:
    v1, v2, v3 = [await _revision(db) for _ in range(3)]
    with pytest.raises(Conflict, match="nothing to roll back"):
        await svc.rollback(T, actor="me")
    await svc.promote(T, v1, actor="me")
    await svc.promote(T, v2, actor="me")
    status = await svc.promote(T, v3, actor="me", canary_percent=25)
    assert (status["current_revision_id"], status["canary_revision_id"]) == (v2, v3)
    ids = [str(uuid.uuid4()) for _ in range(200)]
    for tid in ids:
        expected = v3 if in_canary(tid, 25) else v2
        assert (await svc.route(T, tid, None, "agent"))[0] == expected
    status = await svc.rollback(T, actor="me")  # drops the canary first
    assert (status["current_revision_id"], status["canary_revision_id"]) == (v2, None)
    assert (await svc.rollback(T, actor="me"))["current_revision_id"] == v1
    assert (await svc.rollback(T, actor="me"))["current_revision_id"] is None  # the base
    actions = [e["action"] for e in (await svc.status(T))["events"]]
    assert actions == ["rollback", "rollback", "rollback", "canary", "promote", "promote"]
    assert (await svc.rollback(T, actor="me", to=v3))["current_revision_id"] == v3
    with pytest.raises(Conflict, match="already current"):
        await svc.rollback(T, actor="me", to=v3)


async def test_promote_refusals(svc: DeploymentService, db: Storage) -> None:
    failed = await _revision(db, status="failed")
    with pytest.raises(Conflict, match="failed and never serves"):
        await svc.promote(T, failed, actor="me")
    with pytest.raises(NotFound):
        await svc.promote(T, str(uuid.uuid4()), actor="me")
    with pytest.raises(InvalidInput, match="does not define"):
        await svc.promote(T, await _revision(db, graphs=["agent", "new_graph"]), actor="me")
    other_tenant = await _revision(db, tenant="acme")
    with pytest.raises(NotFound):
        await svc.promote(T, other_tenant, actor="me")
    ok = await _revision(db)
    for bad in (0, 100, 150, -1):
        with pytest.raises(InvalidInput, match="canary_percent"):
            await svc.promote(T, ok, actor="me", canary_percent=bad)
    with pytest.raises(InvalidInput, match="unknown auto_rollback keys"):
        await svc.promote(T, ok, actor="me", canary_percent=5, auto_rollback={"x": 1})
    with pytest.raises(InvalidInput, match="needs max_error_rate"):
        await svc.promote(T, ok, actor="me", canary_percent=5, auto_rollback={"min_runs": 3})
    with pytest.raises(InvalidInput, match="fraction"):
        await svc.promote(T, ok, actor="me", canary_percent=5,
                          auto_rollback={"max_error_rate": 20})
    with pytest.raises(InvalidInput, match="watches a canary"):
        await svc.promote(T, ok, actor="me", auto_rollback={"max_error_rate": 0.2})


async def _ended_runs(db: Storage, revision: str, statuses: list[str], seconds: float = 0.1,
                      ) -> None:
    queue = RunQueue(db)
    now = datetime.now(UTC)
    for status in statuses:
        rid = str(uuid.uuid4())
        await queue.insert(T, {"run_id": rid, "thread_id": str(uuid.uuid4()),
                               "assistant_id": "a", "assistant_version": 1, "graph_id": "agent",
                               "metadata": {}, "kwargs": {}, "multitask_strategy": "enqueue",
                               "revision_id": revision})
        await db.execute(
            "UPDATE runs SET status = ?, started_at = ?, ended_at = ? WHERE run_id = ?",
            (status, (now - timedelta(seconds=seconds)).isoformat(), now.isoformat(), rid))


async def test_auto_rollback(svc: DeploymentService, db: Storage) -> None:
    v1, v2 = await _revision(db), await _revision(db)
    await svc.promote(T, v1, actor="me")
    await svc.promote(T, v2, actor="me", canary_percent=10,
                      auto_rollback={"max_error_rate": 0.5, "min_runs": 4})
    await _ended_runs(db, v2, ["error", "error", "success"])
    assert await svc.check_canaries() == []  # 3 runs: not enough to judge
    await _ended_runs(db, v1, ["error"] * 5)  # the current revision's errors do not count
    assert await svc.check_canaries() == []
    await _ended_runs(db, v2, ["success"])
    assert await svc.check_canaries() == []  # 2/4 = 50%, not above
    await _ended_runs(db, v2, ["error"])
    acted = await svc.check_canaries()
    assert acted and "error rate 60% over 5 runs exceeds 50%" in acted[0]["reason"]
    status = await svc.status(T)
    assert status["canary_revision_id"] is None and status["current_revision_id"] == v1
    assert status["events"][0]["action"] == "auto_rollback"
    assert await svc.check_canaries() == []  # nothing left to judge

    # latency threshold
    v3 = await _revision(db)
    await svc.promote(T, v3, actor="me", canary_percent=10,
                      auto_rollback={"max_p95_seconds": 1.0, "min_runs": 2})
    await _ended_runs(db, v3, ["success", "success"], seconds=0.2)
    assert await svc.check_canaries() == []
    await _ended_runs(db, v3, ["success"] * 2, seconds=5)
    assert "p95" in (await svc.check_canaries())[0]["reason"]
    stats = {s["role"]: s for s in await svc.stats(T)}
    assert stats["current"]["runs"] == 5 and stats["current"]["error_rate"] == 1.0


async def test_migrate_threads(svc: DeploymentService, db: Storage) -> None:
    v1, v2 = await _revision(db), await _revision(db, graphs=["other"])
    threads = Threads(db)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    for tid, status, graph in zip(ids, ["idle", "interrupted", "busy", "idle"],
                                  ["agent", "agent", "agent", "other"], strict=True):
        await threads.insert(T, tid, {"graph_id": graph})
        await threads.update(T, tid, status=status, revision_id=v1)
    dry = await svc.migrate_threads(T, to=v2, from_revision=v1, dry_run=True)
    assert [m["thread_id"] for m in dry["moved"]] == [ids[3]]
    reasons = {s["thread_id"]: s["reason"] for s in dry["skipped"]}
    assert reasons[ids[2]].startswith("busy") and "no graph 'agent'" in reasons[ids[0]]
    assert (await threads.get(T, ids[3]))["revision_id"] == v1  # a dry run changes nothing
    out = await svc.migrate_threads(T, to=BASE, thread_ids=ids[:2])
    assert sorted(m["thread_id"] for m in out["moved"]) == sorted(ids[:2])
    assert (await threads.get(T, ids[0]))["revision_id"] == BASE
    with pytest.raises(NotFound):
        await svc.migrate_threads(T, to=BASE, thread_ids=[str(uuid.uuid4())])
    with pytest.raises(InvalidInput):
        await svc.migrate_threads(T, to=BASE)


async def test_revision_env(svc: DeploymentService, db: Storage) -> None:
    rev = await _revision(db)
    assert await svc.set_env(T, rev, {"B": "2", "A": "secret"}) == ["A", "B"]
    await svc.set_env(T, rev, {"B": None})
    assert [r["name"] for r in await svc.env_names(T, rev)] == ["A"]
    assert await svc.repo.env(T, rev) == {"A": "secret"}
    for bad in ({"1X": "v"}, {"DOCKYARD_DATABASE_URL": "x"}, {"A": 3}, {}):
        with pytest.raises(InvalidInput):
            await svc.set_env(T, rev, bad)
    with pytest.raises(NotFound):
        await svc.set_env("acme", rev, {"A": "b"})


def _project(tmp: Path, deps: list[str], files: dict[str, str]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "agent.py").write_text("graph = None\n")
    (tmp / "langgraph.json").write_text(json.dumps(
        {"graphs": {"agent": "./agent.py:graph"}, "dependencies": deps}))
    for name, text in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
    return tmp


def test_requirements(tmp_path: Path) -> None:
    p = _project(tmp_path / "a", [".", "./lib", "httpx>=0.27"], {
        "requirements.txt": "# pinned\nrich==13.0  # a comment\n\n",
        "lib/pyproject.toml": '[project]\nname = "lib"\ndependencies = ["attrs", "rich==13.0"]\n',
    })
    assert requirements(p) == ["attrs", "httpx>=0.27", "rich==13.0"]
    assert requirements(_project(tmp_path / "b", ["."], {})) == []
    with pytest.raises(EnvBuildFailed, match="pip options"):
        requirements(_project(tmp_path / "c", ["."], {"requirements.txt": "-e ./x\n"}))
    assert env_key(["a"], "") != env_key(["a"], "--no-index") != env_key(["b"], "")


async def test_runs_carry_their_revision_and_claims_filter(db: Storage) -> None:
    queue = RunQueue(db)
    rows: dict[str | None, Any] = {}
    for revision in (None, "rev-a"):
        rid = str(uuid.uuid4())
        await queue.insert(T, {"run_id": rid, "thread_id": str(uuid.uuid4()), "assistant_id": "a",
                               "assistant_version": 1, "graph_id": "agent", "metadata": {},
                               "kwargs": {}, "multitask_strategy": "enqueue",
                               "revision_id": revision})
        rows[revision] = rid
    assert await queue.claim("w", 5, revision="rev-b") is None
    claimed = await queue.claim("w", 5, revision="rev-a")
    assert claimed is not None and claimed["run_id"] == rows["rev-a"]
    assert claimed["revision_id"] == "rev-a"
    base = await queue.claim("w", 5)
    assert base is not None and base["run_id"] == rows[None] and base["revision_id"] is None
    assert await queue.claim("w", 5) is None



def test_smoke_section_is_validated(tmp_path: Path) -> None:
    from dockyard.config import load_project
    from dockyard.errors import ConfigError
    from dockyard.services.triggers import parse_dockyard_section

    def section(smoke: Any) -> Any:
        p = _project(tmp_path / str(uuid.uuid4()), ["."], {})
        config = json.loads((p / "langgraph.json").read_text())
        (p / "langgraph.json").write_text(json.dumps({**config, "dockyard": {"smoke": smoke}}))
        return parse_dockyard_section(load_project(p))

    assert section({"agent": {"input": {"x": 1}}}).smoke == {"agent": {"input": {"x": 1}}}
    for bad, where in (([], "dockyard.smoke"), ({"nope": {"input": 1}}, "no graph 'nope'"),
                       ({"agent": {"inputs": 1}}, "dockyard.smoke.agent"),
                       ({"agent": {"input": 1, "config": []}}, "config")):
        with pytest.raises(ConfigError, match=where):
            section(bad)
