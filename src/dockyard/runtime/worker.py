"""The in-process worker pool: claims runs from the queue and executes them concurrently.

Wake-ups come from ``notify()`` (a run was created in this process, or the storage's
cross-process notification arrived); a slow poll is only the fallback (and the timer for
delayed ``after_seconds`` runs).

Leases: a claimed run holds a lease that the heartbeat renews. A lease sweeper in every pool
re-queues runs whose lease expired (their worker died) and fails those that have crashed their
worker ``max_attempts`` times. In embedded mode (one process owns the database) every
``running`` row at start-up is orphaned and is re-queued at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from dockyard.runtime.executor import ExecutionDeps, TransientRunError, execute_run

log = logging.getLogger("dockyard.worker")

CLAIM_BATCH = 8  # most runs one claim takes (see WorkerPool.claim_batch)


class WorkerPool:
    def __init__(
        self,
        deps: ExecutionDeps,
        *,
        concurrency: int = 16,
        lease_seconds: float = 8.0,
        poll_seconds: float = 1.0,
        embedded: bool = True,
        max_attempts: int = 3,
        tenant_limit: int = 0,
        assistant_limit: int = 0,
        revision: str | None = None,
    ) -> None:
        self.deps = deps
        self.revision = revision  # None: the base project's runs; else that revision's
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.embedded = embedded
        self.max_attempts = max_attempts
        self.tenant_limit = tenant_limit
        self.assistant_limit = assistant_limit
        self.worker_id = f"worker-{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        # Runs one claim may take when a backlog waits (RunQueue.claim_many): a quarter of
        # the slots, at most CLAIM_BATCH, so a burst is not all taken by the first worker.
        self.claim_batch = max(1, min(CLAIM_BATCH, concurrency // 4))
        self._active: dict[str, asyncio.Task[str]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._sweeper_task: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def active_runs(self) -> int:
        return len(self._active)

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self.embedded:
            requeued = await self.deps.queue.requeue_orphans(all_running=True)
            if requeued:
                log.info("runs_requeued count=%d run_ids=%s", len(requeued), requeued)
        else:
            await self.sweep_leases()
        self._loop_task = asyncio.create_task(self._claim_loop(), name="dockyard-claim-loop")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="dockyard-heartbeat")
        self._sweeper_task = asyncio.create_task(self._lease_sweeper(), name="dockyard-leases")
        if self.deps.metrics is not None:
            self.deps.metrics.pool_started(self)

    async def sweep_leases(self) -> tuple[list[str], list[str]]:
        """Re-queue runs of dead workers (expired leases); fail those over max_attempts."""
        requeued, failed = await self.deps.queue.recover_expired(self.max_attempts)
        if self.deps.metrics is not None:
            self.deps.metrics.on_lease_expiries(len(requeued), len(failed))
        if requeued:
            log.info("lease_expired_requeued count=%d run_ids=%s", len(requeued), requeued)
            self._wake.set()
        for run_id in failed:
            log.warning("run_failed_worker_lost run_id=%s attempts=%d", run_id, self.max_attempts)
            await self.deps.bus.finish(run_id, [
                ("error", b'{"error":"WorkerLost","message":'
                          b'"the run crashed its worker too many times"}'),
                ("end", b"null"),
            ])
        return requeued, failed

    async def _lease_sweeper(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.lease_seconds / 4))
            try:
                await self.sweep_leases()
            except Exception:
                log.exception("lease_sweep_failed")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming; let active runs finish within the grace period, then release them.

        Released runs go back to the queue at once (another worker, or the next start, resumes
        them from their last checkpoint) without counting as a failed attempt.
        """
        self._stopping = True
        if self.deps.metrics is not None:
            self.deps.metrics.pool_stopped()
        self._wake.set()
        for side in (self._loop_task, self._sweeper_task):
            if side is not None:
                side.cancel()
        if self._active:
            _, pending = await asyncio.wait(list(self._active.values()), timeout=grace_seconds)
            unfinished = [rid for rid, t in self._active.items() if t in pending]
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
            try:
                released = await self.deps.queue.release(self.worker_id, unfinished)
                if released:
                    log.info("runs_released count=%d run_ids=%s", released, unfinished)
            except Exception:
                log.exception("release_failed")
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        for release in list(self._releases):
            release.cancel()

    async def _claim_loop(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            want = 1
            if self.deps.queue.saw_pending:
                # A backlog: fill free run slots (up to the batch) in one claim, not one each.
                while want < self.claim_batch and not self._slots.locked():
                    await self._slots.acquire()  # free: returns at once
                    want += 1
            # Cleared before the claim, not after: a notification arriving while the claim's
            # query runs is then not lost (it would otherwise wait for the poll).
            self._wake.clear()
            try:
                runs = await self.deps.queue.claim_many(
                    self.worker_id, self.lease_seconds, want, tenant_limit=self.tenant_limit,
                    assistant_limit=self.assistant_limit, revision=self.revision,
                )
            except Exception:
                for _ in range(want):
                    self._slots.release()
                log.exception("claim_failed")
                await asyncio.sleep(self.poll_seconds)
                continue
            for _ in range(want - len(runs)):
                self._slots.release()
            if not runs:
                # The timeout first: an await between creating the wait() coroutine and
                # awaiting it (a query, on PostgreSQL) could be cancelled and leak it.
                await self._wait_for_wake(await self._idle_timeout())
                continue
            for run in runs:
                task = asyncio.create_task(self._execute(run), name=f"run-{run['run_id']}")
                self._active[run["run_id"]] = task
            if not self.deps.queue.saw_pending:
                # It took the only pending runs: the next claim waits for a wake-up (a new
                # run's NOTIFY, a finished run, the poll) instead of finding nothing now.
                await self._wait_for_wake(self.poll_seconds)

    async def _wait_for_wake(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        except TimeoutError:
            pass

    async def _idle_timeout(self) -> float:
        if not self.deps.queue.saw_pending:
            return self.poll_seconds  # no pending run at all, delayed ones included
        nxt = await self.deps.queue.next_available_at(self.revision)
        if nxt is None:
            return self.poll_seconds
        delay = (datetime.fromisoformat(nxt) - datetime.now(UTC)).total_seconds()
        return max(0.005, min(self.poll_seconds, delay))

    async def _execute(self, run: dict[str, object]) -> str:
        run_id = str(run["run_id"])
        metrics = self.deps.metrics
        if metrics is not None:
            metrics.on_claim(run)
        status = "abandoned"  # shutdown: the run goes back to the queue, no duration
        try:
            status = await execute_run(self.deps, run)  # type: ignore[arg-type]
            return status
        except asyncio.CancelledError:
            return "abandoned"
        except TransientRunError as exc:
            log.warning("run_paused_transient run_id=%s error=%s", run_id, exc)
            task = asyncio.create_task(self._release_when_possible(run_id))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)
            return "abandoned"
        except Exception:
            log.exception("run_crashed run_id=%s", run_id)
            await self.deps.queue.finish(run_id, "error", {"error": "InternalError",
                                                          "message": "executor crashed"})
            status = "error"
            return "error"
        finally:
            if metrics is not None and status != "abandoned":
                metrics.on_finish(run, status)
            self._active.pop(run_id, None)
            self._slots.release()
            # A finished run may unblock the next run queued on the same thread, if the last
            # claim saw any run pending (a run created since then has woken the loop itself).
            if self.deps.queue.saw_pending:
                self._wake.set()

    async def _release_when_possible(self, run_id: str, give_up_after: float = 120.0) -> None:
        """Hand a run back to the queue once the database answers again.

        If it never does within ``give_up_after``, the run's lease (no longer renewed) expires
        and another worker's sweep re-queues it.
        """
        delay, waited = 0.25, 0.0
        while waited < give_up_after:
            try:
                await self.deps.queue.release(self.worker_id, [run_id])
                log.info("run_released_after_transient_error run_id=%s", run_id)
                self._wake.set()
                return
            except Exception as exc:
                if not self.deps.storage.is_transient(exc):
                    log.exception("release_failed run_id=%s", run_id)
                    return
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 4)
            try:
                await self.deps.queue.renew(list(self._active), self.lease_seconds)
                if self.deps.metrics is not None:
                    self.deps.metrics.on_heartbeat()
            except Exception:
                log.exception("heartbeat_failed")
