"""The cron scheduler: a side task of every process that executes runs (roles all, worker).

It sleeps until the earliest ``next_run_date`` of any enabled cron, capped at
``poll_seconds`` (``DOCKYARD_CRON_POLL_SECONDS``), and is woken early when a cron is created
or changed (in this process directly; across processes by the storage's run notification,
PostgreSQL NOTIFY). Every process may run one: ``CronService`` claims each tick with a
compare-and-set, so a tick fires once however many schedulers look at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from dockyard.runtime.loops import stop_loop
from dockyard.services.crons import CLAIM_STALE_SECONDS, CronService

log = logging.getLogger("dockyard.crons")

BATCH = 100  # due crons claimed per query; a full batch is followed by another at once
MIN_SLEEP = 0.05


class CronScheduler:
    def __init__(
        self, crons: CronService, *, poll_seconds: float = 10.0, embedded: bool = False,
        stale_after: float = CLAIM_STALE_SECONDS,
    ) -> None:
        self.crons = crons
        self.poll_seconds = poll_seconds
        self.embedded = embedded
        self.stale_after = stale_after
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self.embedded:
            # The only process on this database: every claim left behind is a dead one's.
            await self.crons.recover_claims(older_than=None)
        self._task = asyncio.create_task(self._loop(), name="dockyard-cron-scheduler")

    async def stop(self) -> None:
        self._stopping = True  # the loop ends on it (runtime/loops.py says why)
        await stop_loop(self._task, self._wake)
        self._task = None

    async def tick(self) -> int:
        """One pass: take over stale claims, then fire every due tick. Returns runs created."""
        fired = await self.crons.recover_claims(older_than=self.stale_after)
        while True:
            n = await self.crons.fire_due(limit=BATCH)
            fired += n
            if n < BATCH:
                return fired

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the pass: a change made during it wakes the next one
            try:
                await self.tick()
                timeout = await self._sleep_for()
            except Exception:
                log.exception("cron_scheduler_failed")
                timeout = self.poll_seconds
            # The timeout is computed first, then the wait: nothing awaits in between.
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _sleep_for(self) -> float:
        earliest = await self.crons.earliest_due()
        if earliest is None:
            return self.poll_seconds
        delay = (earliest - datetime.now(UTC)).total_seconds()
        return max(MIN_SLEEP, min(self.poll_seconds, delay))
