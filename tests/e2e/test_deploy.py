"""`dockyard deploy` against a real `dockyard dev`: a revision is verified and stored with its
graph ids, the same code deploys to the same revision, an import error fails with its message
and a non-zero exit, and `dockyard revisions list` shows them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ONE_NODE_GRAPH
from tests.e2e.conftest import DOCKYARD, Server, make_server


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    (tmp_path / "server").mkdir()
    server = make_server(tmp_path / "server")
    server.start()
    yield server
    server.stop()


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DOCKYARD), *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_deploy_and_list(srv: Server, tmp_path: Path) -> None:
    project = tmp_path / "agent"
    project.mkdir()
    (project / "agent.py").write_text(ONE_NODE_GRAPH)
    (project / "langgraph.json").write_text(json.dumps(
        {"graphs": {"hello": "./agent.py:graph", "again": "./agent.py:graph"}}))
    (project / ".dockyardignore").write_text("notes/\n")
    (project / "notes").mkdir()
    (project / "notes" / "todo.txt").write_text("not shipped")

    first = _cli("deploy", "--server", srv.url, "-m", "first", cwd=project)
    assert first.returncode == 0, first.stderr
    assert "uploading 100%" in first.stderr and "bundled" in first.stderr
    assert " ready (new)" in first.stdout and "again, hello" in first.stdout
    revision_id = first.stdout.split()[1]

    (project / "notes" / "todo.txt").write_text("changed, still ignored")
    same = _cli("deploy", str(project), "--server", srv.url, cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert same.stdout.split()[1] == revision_id and "existing revision" in same.stdout

    (project / "agent.py").write_text("import a_module_that_does_not_exist\n" + ONE_NODE_GRAPH)
    broken = _cli("deploy", "--server", srv.url, "-m", "broken", cwd=project)
    assert broken.returncode != 0
    assert "revision_failed" not in broken.stdout
    assert "a_module_that_does_not_exist" in broken.stderr, broken.stderr
    assert "failed verification" in broken.stderr

    listed = _cli("revisions", "list", "--server", srv.url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    revisions = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["status"] for r in revisions] == ["failed", "ready"]
    assert revisions[1]["revision_id"] == revision_id
    assert revisions[1]["graphs"] == ["again", "hello"] and revisions[1]["message"] == "first"
    assert revisions[0]["message"] == "broken"
    assert "a_module_that_does_not_exist" in revisions[0]["error"]
    assert revisions[1]["author"]  # git user.name or $USER

    # the server is unharmed by the broken import (it ran in a process of its own)
    assert httpx.get(f"{srv.url}/ok", timeout=5).status_code == 200


def test_deploy_without_server_or_config(tmp_path: Path) -> None:
    out = _cli("deploy", "--server", "http://127.0.0.1:9", cwd=tmp_path)
    assert out.returncode != 0 and "langgraph.json" in out.stderr
