"""Revisions: immutable, verified uploads of a tenant's project (what `dockyard deploy` sends).

A deploy is: unpack the archive safely (``dockyard.bundle``), compute its content hash, return
the tenant's existing revision of the same content if there is one, otherwise verify it (load
the project config and import every graph in a separate interpreter) and store it as ``ready``
with its graph ids, or ``failed`` with the full error. A failed revision never serves.

Verification runs in the revision's own environment (``runtime/revision_env.py``), so a
requirement that cannot be installed fails the revision too. Serving (worker processes per
revision, routing, canaries, rollback) is ``services/deployments.py`` and
``runtime/supervisor.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.bundle import unpack
from dockyard.errors import Conflict, DockyardError, InvalidInput, NotFound
from dockyard.runtime.revision_env import build_env, requirements
from dockyard.services.ids import new_id
from dockyard.storage.base import Storage, utcnow
from dockyard.storage.revisions import Revisions

log = logging.getLogger("dockyard.revisions")

VERIFY_TIMEOUT_SECONDS = 120.0
META_MAX = 2000  # characters of a message, author or commit


class RevisionFailed(InvalidInput):
    """The revision was stored as ``failed``: its code does not load (422)."""

    code = "revision_failed"


@dataclass(frozen=True)
class DeployMeta:
    message: str | None = None
    author: str | None = None
    git_commit: str | None = None


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("revision_id", "content_hash", "status", "error", "graphs",
                                    "author", "message", "git_commit", "created_at",
                                    "size_bytes", "build_log")}


class RevisionService:
    def __init__(self, db: Storage, *, max_bytes: int, max_files: int, envs_root: Path,
                 pip_args: str = "", verify_timeout: float = VERIFY_TIMEOUT_SECONDS) -> None:
        self.revisions = Revisions(db)
        self.envs_root = envs_root
        self.pip_args = pip_args
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.verify_timeout = verify_timeout

    async def deploy(self, tenant: str, archive: Path, meta: DeployMeta) -> tuple[dict[str, Any], bool]:
        """Store (or find) the revision of the tar.gz at ``archive``: ``(revision, created)``.

        Raises ``UnsafeArchive`` for a refused archive (nothing stored) and ``RevisionFailed``
        (after storing it) for code that does not load.
        """
        for name in ("message", "author", "git_commit"):
            value = getattr(meta, name)
            if value is not None and len(value) > META_MAX:
                raise InvalidInput(f"{name} is longer than {META_MAX} characters")
        with tempfile.TemporaryDirectory(prefix="dockyard-revision-") as tmp:
            project = Path(tmp) / "project"
            project.mkdir()
            unpacked = await asyncio.to_thread(unpack, archive, project, max_bytes=self.max_bytes,
                                               max_files=self.max_files)
            existing = await self.revisions.by_hash(tenant, unpacked.content_hash)
            if existing is not None:
                return self._outcome(existing), False
            build_log = [f"unpacked {unpacked.files} entries "
                         f"({unpacked.size / 1024:.1f} KiB), content {unpacked.content_hash[:12]}"]
            outcome = await self._verify(project, build_log)
        row = {
            "revision_id": new_id(), "tenant_id": tenant, "content_hash": unpacked.content_hash,
            "author": meta.author, "message": meta.message, "git_commit": meta.git_commit,
            "created_at": utcnow(), "status": "failed" if "error" in outcome else "ready",
            "error": outcome.get("error"), "graphs": outcome.get("graphs", []),
            "size_bytes": archive.stat().st_size, "build_log": "\n".join(build_log)[-8000:],
        }
        try:
            await self.revisions.insert(row, await asyncio.to_thread(archive.read_bytes))
        except Conflict:  # the same content deployed concurrently: that one wins
            existing = await self.revisions.by_hash(tenant, unpacked.content_hash)
            if existing is None:
                raise
            return self._outcome(existing), False
        log.info("revision_created revision_id=%s tenant=%s status=%s graphs=%s",
                 row["revision_id"], tenant, row["status"], row["graphs"])
        return self._outcome(row), True

    @staticmethod
    def _outcome(row: dict[str, Any]) -> dict[str, Any]:
        return public(row)

    async def _verify(self, project: Path, build_log: list[str]) -> dict[str, Any]:
        """Build the revision's environment, then import its graphs in a child interpreter
        of that environment; ``{"graphs"}`` or ``{"error"}``. Steps go to ``build_log``."""
        started = time.perf_counter()
        try:
            reqs = await asyncio.to_thread(requirements, project)
            python = await asyncio.to_thread(build_env, reqs, self.envs_root,
                                             pip_args=self.pip_args, progress=build_log.append)
        except DockyardError as exc:
            build_log.append(f"environment failed after {time.perf_counter() - started:.1f}s")
            return {"error": exc.message}
        build_log.append(
            f"environment ready in {time.perf_counter() - started:.1f}s: "
            + (f"{len(reqs)} requirements ({', '.join(reqs)})" if reqs
               else "no requirements (the server's interpreter)"))
        started = time.perf_counter()
        result = project.parent / "verify.json"
        # The server's own settings (database URL, secrets) are not the revision's business.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        proc = await asyncio.create_subprocess_exec(
            python, "-m", "dockyard.runtime.verify", str(project), str(result),
            cwd=project, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), self.verify_timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return {"error": f"loading the graphs took longer than {self.verify_timeout:g}s"}
        try:
            outcome: dict[str, Any] = json.loads(result.read_text())
        except (OSError, ValueError):
            tail = output.decode(errors="replace")[-4000:]
            return {"error": f"the verification process exited with code {proc.returncode} "
                             f"before reporting: {tail}".strip()}
        if "error" in outcome:  # paths of the temporary directory mean nothing to the user
            outcome["error"] = str(outcome["error"]).replace(str(project) + os.sep, "") \
                .replace(str(project), ".")
            build_log.append(f"verification failed after {time.perf_counter() - started:.1f}s")
        else:
            build_log.append(f"verified in {time.perf_counter() - started:.1f}s: graphs "
                             f"{', '.join(outcome.get('graphs', []))}")
        return outcome

    async def get(self, tenant: str, revision_id: str) -> dict[str, Any]:
        row = await self.revisions.get(tenant, revision_id)
        if row is None:
            raise NotFound(f"revision {revision_id!r} not found", code="revision_not_found")
        return public(row)

    async def list(self, tenant: str, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        return [public(r) for r in await self.revisions.list(tenant, limit=limit, offset=offset)]

    async def archive(self, tenant: str, revision_id: str) -> bytes:
        data = await self.revisions.archive(tenant, revision_id)
        if data is None:
            raise NotFound(f"revision {revision_id!r} not found", code="revision_not_found")
        return data
