"""Config keys Dockyard honours (http.cors/disable_*, checkpointer.ttl) or refuses (auth, …)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from dockyard.errors import ConfigError
from dockyard.services.core import Dockyard, check_project_features

GRAPH = """
from typing import TypedDict
from langgraph.graph import StateGraph, START, END

class S(TypedDict, total=False):
    n: int

def inc(s):
    return {"n": s.get("n", 0) + 1}

b = StateGraph(S)
b.add_node("inc", inc)
b.add_edge(START, "inc")
b.add_edge("inc", END)
graph = b.compile()
"""


def _project(tmp_path: Path, **extra: Any) -> Path:
    (tmp_path / "g.py").write_text(GRAPH)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}, **extra}))
    return tmp_path


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"auth": {"path": "./auth.py:auth", "cache": {}}}, "auth.cache"),
        ({"http": {"app": "./app.py:app"}}, "http.app"),
        ({"store": {"index": {"dims": 3}}}, "store.index"),
        ({"checkpointer": {"ttl": {"strategy": "archive"}}}, "checkpointer.ttl.strategy"),
        ({"checkpointer": {"ttl": {"default_ttl": -1}}}, "checkpointer.ttl.default_ttl"),
    ],
)
def test_unsupported_config_is_refused_naming_the_key(
    tmp_path: Path, extra: dict[str, Any], key: str
) -> None:
    project = load_project(_project(tmp_path, **extra))
    with pytest.raises(ConfigError) as err:
        check_project_features(project)
    assert "langgraph.json" in str(err.value)
    assert key in str(err.value)


def _client(tmp_path: Path, **extra: Any) -> TestClient:
    project = load_project(_project(tmp_path, **extra))
    settings = Settings.from_env({"data_dir": str(tmp_path / "data")}, environ={})
    return TestClient(create_app(project, settings))


def test_http_disable_and_cors(tmp_path: Path) -> None:
    extra = {"http": {"disable_store": True, "disable_meta": True,
                      "cors": {"allow_origins": ["https://ui.example"]}}}
    with _client(tmp_path, **extra) as client:
        assert client.get("/ok").status_code == 200
        assert client.get("/info").status_code == 404
        assert client.post("/store/items/search", json={}).status_code == 404
        assert client.post("/threads", json={}).status_code == 200
        pre = client.options(
            "/threads",
            headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"},
        )
        assert pre.headers["access-control-allow-origin"] == "https://ui.example"


async def test_thread_ttl_sweep_deletes_old_threads(tmp_path: Path) -> None:
    project = load_project(_project(tmp_path, checkpointer={"ttl": {"default_ttl": 60}}))
    settings = Settings.from_env({"data_dir": str(tmp_path / "data")}, environ={})
    app = Dockyard(project, settings)
    await app.start()
    try:
        old = await app.threads.create("default")
        new = await app.threads.create("default")
        # Every tenant's threads expire, each through its own tenant's scope.
        other_old = await app.threads.create("team-b")
        other_new = await app.threads.create("team-b")
        await app.storage.execute(
            "UPDATE threads SET updated_at = '2000-01-01T00:00:00+00:00' WHERE thread_id IN (?, ?)",
            (old["thread_id"], other_old["thread_id"]),
        )
        assert await app.sweep_expired_threads(60) == 2
        remaining = {t["thread_id"] for t in await app.threads.search("default", limit=10)}
        assert remaining == {new["thread_id"]}
        remaining_b = {t["thread_id"] for t in await app.threads.search("team-b", limit=10)}
        assert remaining_b == {other_new["thread_id"]}
    finally:
        await app.stop()
