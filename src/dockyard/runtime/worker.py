"""The in-process worker pool: claims runs from the queue and executes them concurrently.

Wake-ups come from ``notify()`` (a run was created in this process); a slow poll is only the
fallback (and the timer for delayed ``after_seconds`` runs). Leases are renewed by a heartbeat
so that the production topology can re-claim the runs of a dead worker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from dockyard.runtime.executor import ExecutionDeps, execute_run

log = logging.getLogger("dockyard.worker")


class WorkerPool:
    def __init__(
        self,
        deps: ExecutionDeps,
        *,
        concurrency: int = 16,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.deps = deps
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.worker_id = f"worker-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._active: dict[str, asyncio.Task[str]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def active_runs(self) -> int:
        return len(self._active)

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        requeued = await self.deps.queue.requeue_orphans(all_running=True)
        if requeued:
            log.info("runs_requeued count=%d run_ids=%s", len(requeued), requeued)
        self._loop_task = asyncio.create_task(self._claim_loop(), name="dockyard-claim-loop")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="dockyard-heartbeat")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming; let active runs finish within the grace period, then abandon them.

        Abandoned runs stay 'running' in storage and are re-queued (and resumed from their
        last checkpoint) by the next start.
        """
        self._stopping = True
        self._wake.set()
        for side in (self._loop_task, self._heartbeat_task):
            if side is not None:
                side.cancel()
        if self._active:
            _, pending = await asyncio.wait(list(self._active.values()), timeout=grace_seconds)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            try:
                run = await self.deps.queue.claim(self.worker_id, self.lease_seconds)
            except Exception:
                self._slots.release()
                log.exception("claim_failed")
                await asyncio.sleep(self.poll_seconds)
                continue
            if run is None:
                self._slots.release()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=await self._idle_timeout())
                except TimeoutError:
                    pass
                continue
            task = asyncio.create_task(self._execute(run), name=f"run-{run['run_id']}")
            self._active[run["run_id"]] = task

    async def _idle_timeout(self) -> float:
        nxt = await self.deps.queue.next_available_at()
        if nxt is None:
            return self.poll_seconds
        delay = (datetime.fromisoformat(nxt) - datetime.now(UTC)).total_seconds()
        return max(0.005, min(self.poll_seconds, delay))

    async def _execute(self, run: dict[str, object]) -> str:
        run_id = str(run["run_id"])
        try:
            return await execute_run(self.deps, run)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            return "abandoned"
        except Exception:
            log.exception("run_crashed run_id=%s", run_id)
            await self.deps.queue.finish(run_id, "error", {"error": "InternalError",
                                                          "message": "executor crashed"})
            return "error"
        finally:
            self._active.pop(run_id, None)
            self._slots.release()
            # A finished run may unblock the next run queued on the same thread.
            self._wake.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.deps.queue.renew(list(self._active), self.lease_seconds)
            except Exception:
                log.exception("heartbeat_failed")
