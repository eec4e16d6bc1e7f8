"""Revisions: the archive safety checks (malicious tarballs crafted here), deterministic
bundling that honours the ignore files, and POST /revisions on the selected database (dedup by
content, failed verification stored with its error, the deploy role, the audit entry)."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.bundle import UnsafeArchive, build_archive, collect_files, unpack
from dockyard.config import Settings, load_project
from dockyard.services.auth import ROLES
from tests.conftest import ONE_NODE_GRAPH, NewDatabase

LIMITS = {"max_bytes": 1 << 20, "max_files": 50}


def _tar(add: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        add(tar)
    return buf.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"x = 1\n") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def _unpack(tmp_path: Path, data: bytes, **limits: int) -> Path:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(data)
    dest = tmp_path / "out"
    dest.mkdir()
    unpack(archive, dest, **{**LIMITS, **limits})
    return dest


@pytest.mark.parametrize(("build", "reason"), [
    (lambda t: _file(t, "/etc/cron.d/evil"), "absolute path"),
    (lambda t: _file(t, "../x"), "'..' component"),
    (lambda t: _file(t, "a/../../x"), "'..' component"),
    (lambda t: _link(t, "passwd", "/etc/passwd"), "outside the bundle"),
    (lambda t: _link(t, "up", "../../etc"), "outside the bundle"),
    (lambda t: _link(t, "hard", "/etc/passwd", tarfile.LNKTYPE), "absolute path"),
    (lambda t: _link(t, "hard", "missing.py", tarfile.LNKTYPE), "not a file of the bundle"),
    (lambda t: _link(t, "dev", "", tarfile.CHRTYPE), "device, FIFO"),
    (lambda t: _link(t, "fifo", "", tarfile.FIFOTYPE), "device, FIFO"),
    (lambda t: (_file(t, "a.py"), _file(t, "./a.py")), "appears twice"),
])
def test_malicious_archives_are_refused(tmp_path: Path, build: Callable[[tarfile.TarFile], None],
                                        reason: str) -> None:
    with pytest.raises(UnsafeArchive, match=reason):
        _unpack(tmp_path, _tar(build))
    assert not (tmp_path / "etc").exists() and not (tmp_path / "x").exists()


def test_writing_through_an_inside_link_cannot_escape(tmp_path: Path) -> None:
    """A link that is inside the bundle, then a file written through a chain that resolves out."""
    def build(t: tarfile.TarFile) -> None:
        _link(t, "d", ".")  # inside: fine
        _file(t, "d/ok.py")
    dest = _unpack(tmp_path, _tar(build))
    assert (dest / "ok.py").read_bytes() == b"x = 1\n"


def test_gzip_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    big = b"\0" * (8 << 20)  # 8 MiB of zeros: a few KiB compressed
    data = _tar(lambda t: _file(t, "bomb.bin", big))
    assert len(data) < 64 * 1024
    with pytest.raises(UnsafeArchive, match="larger than 1048576 bytes once decompressed"):
        _unpack(tmp_path, data)
    assert not (tmp_path / "out" / "bomb.bin").exists() or \
        (tmp_path / "out" / "bomb.bin").stat().st_size <= 1 << 20


def test_too_many_files(tmp_path: Path) -> None:
    data = _tar(lambda t: [_file(t, f"f{i}.py") for i in range(60)])
    with pytest.raises(UnsafeArchive, match="more than 50 entries"):
        _unpack(tmp_path, data)


def test_not_a_tarball(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match="not a valid gzip-compressed tar"):
        _unpack(tmp_path, b"hello")
    (tmp_path / "x").mkdir()
    with pytest.raises(UnsafeArchive, match="not a valid gzip-compressed tar"):
        _unpack(tmp_path / "x", gzip.compress(b"not a tar" * 100))


# ---- bundling --------------------------------------------------------------------------------

def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "g.py").write_text(ONE_NODE_GRAPH)
    (root / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    return root


def test_bundle_honours_ignore_files_and_is_deterministic(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    (root / ".gitignore").write_text("*.log\nbuild/\n")
    (root / ".dockyardignore").write_text("secrets.env\n")
    for rel in ("app.log", "build/out.py", "secrets.env", ".git/HEAD", ".venv/bin/python",
                "pkg/__pycache__/m.pyc", ".dockyard/dockyard.db", "pkg/m.py"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    os.symlink("pkg/m.py", root / "alias.py")
    assert collect_files(root) == [".dockyardignore", ".gitignore", "alias.py", "g.py",
                                   "langgraph.json", "pkg/m.py"]
    # A nested ignore file applies below its directory, as in git.
    (root / "tools" / "venv" / "bin").mkdir(parents=True)
    (root / "tools" / ".gitignore").write_text("venv/\n*.tmp\n")
    (root / "tools" / "run.py").write_text("x")
    (root / "tools" / "scratch.tmp").write_text("x")
    (root / "scratch.tmp").write_text("x")  # not below tools/: kept
    os.symlink("/usr/bin/python3", root / "tools" / "venv" / "bin" / "python")
    assert collect_files(root) == [".dockyardignore", ".gitignore", "alias.py", "g.py",
                                   "langgraph.json", "pkg/m.py", "scratch.tmp",
                                   "tools/.gitignore", "tools/run.py"]
    first = build_archive(root)
    os.utime(root / "g.py", (1, 1))  # timestamps do not matter
    assert build_archive(root) == first

    def content_hash(data: bytes, name: str) -> str:
        archive = tmp_path / f"{name}.tar.gz"
        archive.write_bytes(data)
        (tmp_path / name).mkdir()
        return unpack(archive, tmp_path / name, **LIMITS).content_hash

    h1 = content_hash(first, "one")
    (root / "pkg" / "m.py").write_text("y")
    h2 = content_hash(build_archive(root), "two")
    assert h1 != h2
    (root / "pkg" / "m.py").write_text("x")
    (root / "ignored.log").write_text("does not count")
    assert content_hash(build_archive(root), "three") == h1
    # a different tar writer of the same content: the same hash
    other = _tar(lambda t: [t.add(root / rel, arcname=rel) for rel in collect_files(root)])
    assert content_hash(other, "four") == h1


def test_bundle_refuses_links_outside(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    os.symlink("/etc/passwd", root / "passwd")
    with pytest.raises(Exception, match="points outside the project"):
        collect_files(root)


# ---- the API on the selected database ---------------------------------------------------------

BROKEN = "import not_a_module_anywhere\n"


def test_post_revisions(tmp_path: Path, new_database: NewDatabase) -> None:
    server_root = _project(tmp_path / "server")
    settings = Settings.from_env({"data_dir": str(tmp_path / "data"),
                                  "database_url": new_database(), "auth": "keys",
                                  "max_revision_bytes": 200_000}, environ={})
    app = create_app(load_project(server_root), settings)
    with TestClient(app) as c:
        auth = app.state.dockyard.auth
        portal = c.portal
        assert portal is not None
        keys = {}
        for tenant in ("a", "b"):
            portal.call(auth.create_tenant, tenant)
            for role in ROLES:
                keys[(tenant, role)] = portal.call(
                    lambda t=tenant, r=role: auth.create_key(t, r))["key"]

        def h(tenant: str, role: str = "developer", **extra: str) -> dict[str, str]:
            return {"X-Api-Key": keys[(tenant, role)], "Content-Type": "application/gzip",
                    **extra}

        archive = build_archive(_project(tmp_path / "p"))
        meta = {"X-Dockyard-Message": "first%20d%C3%A9ploy", "X-Dockyard-Author": "ann"}
        made = c.post("/revisions", content=archive, headers=h("a", **meta))
        assert made.status_code == 201, made.text
        rev = made.json()
        assert rev["status"] == "ready" and rev["graphs"] == ["g"]
        assert rev["message"] == "first déploy" and rev["author"] == "ann"
        again = c.post("/revisions", content=archive, headers=h("a"))
        assert again.status_code == 200 and again.json()["revision_id"] == rev["revision_id"]
        # roles: viewers and operators may read, not deploy
        for role in ("viewer", "approver", "operator"):
            assert c.post("/revisions", content=archive, headers=h("a", role)).status_code == 403
        listed = c.get("/revisions", headers=h("a", "viewer")).json()
        assert [r["revision_id"] for r in listed] == [rev["revision_id"]]
        assert "archive" not in listed[0]
        # isolation: B's identical code is B's own revision; A's is invisible to B
        b_rev = c.post("/revisions", content=archive, headers=h("b")).json()
        assert b_rev["revision_id"] != rev["revision_id"]
        assert c.get(f"/revisions/{rev['revision_id']}", headers=h("b")).status_code == 404
        assert [r["revision_id"] for r in c.get("/revisions", headers=h("b")).json()] == [
            b_rev["revision_id"]]
        # code that does not import: stored as failed, with the error, answered 422
        broken = _project(tmp_path / "broken")
        (broken / "g.py").write_text(BROKEN)
        failed = c.post("/revisions", content=build_archive(broken), headers=h("a"))
        assert failed.status_code == 422 and failed.json()["code"] == "revision_failed"
        assert "not_a_module_anywhere" in failed.json()["detail"]
        stored = failed.json()["details"]["revision"]
        assert stored["status"] == "failed" and "not_a_module_anywhere" in stored["error"]
        assert c.get(f"/revisions/{stored['revision_id']}",
                     headers=h("a")).json()["status"] == "failed"
        # refused archives: 422 with the reason, nothing stored
        evil = _tar(lambda t: _file(t, "../escape.py"))
        refused = c.post("/revisions", content=evil, headers=h("a"))
        assert refused.status_code == 422 and "'..' component" in refused.json()["detail"]
        too_big = c.post("/revisions", content=os.urandom(300_000), headers=h("a"))
        assert too_big.status_code == 413, too_big.text
        assert "DOCKYARD_MAX_REVISION_BYTES" in too_big.json()["detail"]
        assert c.post("/revisions", content=b"{}", headers={
            **h("a"), "Content-Type": "application/json"}).status_code == 422
        assert len(c.get("/revisions", headers=h("a")).json()) == 2
        # each deploy is audited
        audit = c.get("/admin/audit", params={"action": "revision.create"},
                      headers={"X-Api-Key": keys[("a", "admin")]}).json()
        assert len(audit) == 3 and {r["detail"]["status"] for r in audit} == {"ready", "failed"}


async def test_a_revision_worker_stops_once_its_supervisor_is_gone() -> None:
    """The supervisor passes its pid: a revision worker whose parent is not that process (it
    died, even before the worker got going, and the worker was re-parented) stops; one whose
    supervisor lives keeps running."""
    from dockyard.runtime.revision_worker import _watch_parent

    gone = asyncio.Event()
    await asyncio.wait_for(_watch_parent(os.getppid() + 1, gone, every=0.01), 10)
    assert gone.is_set()
    alive = asyncio.Event()
    watching = asyncio.create_task(_watch_parent(os.getppid(), alive, every=0.01))
    await asyncio.sleep(0.2)
    assert not alive.is_set() and not watching.done()
    watching.cancel()
