"""Worker processes for the revisions that serve, started and stopped with the deployment.

Every process that executes runs (roles ``all`` and ``worker``) runs one supervisor. It keeps
one child process (``runtime/revision_worker.py``) per live revision — current or canary of
any tenant, holding pending/running runs (a thread pinned to an older revision that
resumed), or a tenant's newest revision for five minutes after its deploy (pre-warmed for
the promote that usually follows) — with the revision's files unpacked and its environment
built on this machine (``runtime/revision_env.py``). A child that exits is restarted with
backoff; a revision that stops being live keeps its child for ``linger_seconds`` (a resumed
old thread often brings a second run), then the child is sent SIGTERM and hands its
unfinished runs back to the queue.
A revision whose environment variables change gets a fresh child.

The supervisor also watches canaries: ``DeploymentService.check_canaries`` rolls back one
whose error rate or p95 crosses its thresholds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dockyard.config import Settings
from dockyard.errors import DockyardError
from dockyard.runtime.loops import stop_loop
from dockyard.runtime.relay import RelayServer
from dockyard.runtime.revision_env import build_env, materialize, requirements
from dockyard.services.deployments import DeploymentService
from dockyard.storage.revisions import Revisions

log = logging.getLogger("dockyard.supervisor")


@dataclass
class Child:
    tenant: str
    revision_id: str
    env_hash: str
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    next_start: float = 0.0
    idle_since: float | None = None
    failed: str | None = field(default=None)


class RevisionSupervisor:
    def __init__(
        self, deployments: DeploymentService, settings: Settings, *, data_dir: Path,
        database_url: str, relay: RelayServer | None, poll_seconds: float = 1.0,
        linger_seconds: float = 30.0, canary_check_seconds: float = 2.0,
        prewarm_seconds: float = 300.0,
    ) -> None:
        self.deployments = deployments
        self.revisions: Revisions = deployments.revisions
        self.settings = settings
        self.data_dir = data_dir
        self.database_url = database_url
        self.relay = relay
        self.poll_seconds = poll_seconds
        self.linger_seconds = linger_seconds
        self.canary_check_seconds = canary_check_seconds
        self.prewarm_seconds = prewarm_seconds
        self.children: dict[str, Child] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_canary_check = 0.0
        self._stopping = False

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dockyard-revision-supervisor")

    async def stop(self, grace_seconds: float) -> None:
        self._stopping = True  # the loop ends on it (runtime/loops.py says why)
        await stop_loop(self._task, self._wake)
        await asyncio.gather(*(self._terminate(c, grace_seconds)
                               for c in list(self.children.values())))
        self.children.clear()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.reconcile()
                now = time.monotonic()
                if now - self._last_canary_check >= self.canary_check_seconds:
                    self._last_canary_check = now
                    await self.deployments.check_canaries()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("revision_supervisor_failed")
            if self._stopping:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def reconcile(self) -> None:
        """Start the children of live revisions; stop those idle past the linger time."""
        since = (datetime.now(UTC) - timedelta(seconds=self.prewarm_seconds)).isoformat()
        live = {r["revision_id"]: r["tenant_id"]
                for r in await self.deployments.repo.live_revisions(since)}
        envs = await self.deployments.repo.envs(live)
        now = time.monotonic()
        for revision_id, tenant in live.items():
            env = envs[revision_id]
            env_hash = hashlib.sha256(repr(sorted(env.items())).encode()).hexdigest()
            child = self.children.get(revision_id)
            if child is not None and child.env_hash != env_hash:
                log.info("revision_env_changed revision_id=%s: restarting its worker", revision_id)
                await self._terminate(child, self.settings.shutdown_grace_seconds)
                child = None
            if child is None:
                child = self.children[revision_id] = Child(tenant, revision_id, env_hash)
            child.idle_since = None
            running = child.proc is not None and child.proc.returncode is None
            if not running and now >= child.next_start:
                if child.proc is not None:
                    child.restarts += 1
                    log.warning("revision_worker_exited revision_id=%s code=%s restarts=%d",
                                revision_id, child.proc.returncode, child.restarts)
                await self._spawn(child, env)
        for revision_id, child in list(self.children.items()):
            if revision_id in live:
                continue
            if child.idle_since is None:
                child.idle_since = now
            elif now - child.idle_since >= self.linger_seconds:
                await self._terminate(child, self.settings.shutdown_grace_seconds)
                del self.children[revision_id]

    async def _spawn(self, child: Child, env: dict[str, str]) -> None:
        # Backoff first: a failure below (a broken build) must not retry in a tight loop.
        child.next_start = time.monotonic() + min(60.0, 0.5 * 2 ** min(child.restarts, 7))
        archive = await self.revisions.archive(child.tenant, child.revision_id)
        if archive is None:
            return
        try:
            project = await asyncio.to_thread(
                materialize, archive, self.data_dir / "revisions", child.revision_id,
                max_bytes=self.settings.max_revision_bytes,
                max_files=self.settings.max_revision_files)
            reqs = await asyncio.to_thread(requirements, project)
            python = await asyncio.to_thread(build_env, reqs, self.data_dir / "envs",
                                             pip_args=self.settings.revision_pip_args)
        except DockyardError as exc:
            if child.failed != exc.message:
                log.error("revision_worker_not_started revision_id=%s error=%s",
                          child.revision_id, exc.message)
            child.failed = exc.message
            child.restarts += 1
            return
        child.failed = None
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        child_env.update(env)  # the revision's own variables
        child_env.update(self._dockyard_env(child, project))
        child.proc = await asyncio.create_subprocess_exec(
            python, "-m", "dockyard.runtime.revision_worker", cwd=project, env=child_env,
            stdin=asyncio.subprocess.DEVNULL)
        log.info("revision_worker_spawned revision_id=%s pid=%d", child.revision_id,
                 child.proc.pid)

    def _dockyard_env(self, child: Child, project: Path) -> dict[str, str]:
        s = self.settings
        out = {
            "DOCKYARD_REVISION_ID": child.revision_id,
            "DOCKYARD_REVISION_PROJECT": str(project),
            "DOCKYARD_SUPERVISOR_PID": str(os.getpid()),  # stop if this process is gone
            "DOCKYARD_DATABASE_URL": self.database_url,
            "DOCKYARD_LEASE_SECONDS": str(s.lease_seconds),
            "DOCKYARD_MAX_ATTEMPTS": str(s.max_attempts),
            "DOCKYARD_SHUTDOWN_GRACE_SECONDS": str(s.shutdown_grace_seconds),
            "DOCKYARD_REVISION_WORKERS": str(s.revision_workers),
            "DOCKYARD_LOG_LEVEL": s.log_level,
            "DOCKYARD_LOG_FORMAT": s.log_format,
        }
        if s.redis_url:
            out["DOCKYARD_REDIS_URL"] = s.redis_url
        if self.relay is not None:
            out["DOCKYARD_RELAY_SOCKET"] = str(self.relay.path)
        return out

    async def _terminate(self, child: Child, grace_seconds: float) -> None:
        proc = child.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_seconds + 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        log.info("revision_worker_stopped revision_id=%s", child.revision_id)

    def describe(self) -> list[dict[str, Any]]:
        """This process's revision workers (for logs and the release console)."""
        return [{"revision_id": c.revision_id, "tenant_id": c.tenant,
                 "pid": c.proc.pid if c.proc else None,
                 "running": c.proc is not None and c.proc.returncode is None,
                 "restarts": c.restarts, "error": c.failed} for c in self.children.values()]
