"""A revision's worker process: ``python -m dockyard.runtime.revision_worker``.

Started by the supervisor (``runtime/supervisor.py``) with the revision environment's
interpreter, in the revision's project directory. It claims only runs pinned to its revision
and executes them with the revision's graphs; the queue, checkpoints, leases and crash recovery
are the ordinary worker's. Its settings come from the environment the supervisor gives it:

* ``DOCKYARD_REVISION_ID``, ``DOCKYARD_REVISION_PROJECT`` — which revision, where its files are;
* ``DOCKYARD_DATABASE_URL`` (always a full URL), ``DOCKYARD_REDIS_URL`` (optional),
  ``DOCKYARD_RELAY_SOCKET`` (embedded mode: events and wake-ups through the parent);
* ``DOCKYARD_SUPERVISOR_PID`` — the supervisor: when it is gone, this process stops;
* the usual ``DOCKYARD_*`` worker settings (lease, attempts, grace), and the revision's own
  environment variables.

Every ``DOCKYARD_*`` variable is removed from ``os.environ`` before the revision's code is
imported: the revision's code has no business with the server's database URL or secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from dockyard.config import Settings, load_project
from dockyard.logs import configure_logging
from dockyard.runtime.executor import ExecutionDeps
from dockyard.runtime.loader import GraphRegistry
from dockyard.runtime.process import run_process
from dockyard.runtime.relay import RelayBus
from dockyard.runtime.webhooks import UrlPolicy, WebhookDeliverer
from dockyard.runtime.worker import WorkerPool
from dockyard.storage import create_storage
from dockyard.storage.kvstore import DockyardStore
from dockyard.storage.webhooks import WebhookDeliveries
from dockyard.streams.base import EventBus
from dockyard.streams.redis import RedisBus

log = logging.getLogger("dockyard.revision_worker")


async def serve() -> int:
    revision = os.environ["DOCKYARD_REVISION_ID"]
    project_dir = Path(os.environ["DOCKYARD_REVISION_PROJECT"])
    relay = os.environ.get("DOCKYARD_RELAY_SOCKET")
    # The supervisor's pid, as it gave it: read now, os.getppid() would already say 1 if the
    # supervisor died while this process was starting.
    parent = int(os.environ.get("DOCKYARD_SUPERVISOR_PID") or os.getppid())
    settings = Settings.from_env()
    for key in [k for k in os.environ if k.startswith("DOCKYARD_")]:
        del os.environ[key]
    configure_logging(settings.log_level, settings.log_format)
    project = load_project(project_dir)
    project.apply_env()
    storage = create_storage(settings.database_url, default_path=project_dir / "unused.db")
    stop = asyncio.Event()
    watchdog = asyncio.create_task(_watch_parent(parent, stop), name="dockyard-parent")
    pool_ref: list[WorkerPool] = []

    def wake() -> None:
        if pool_ref:
            pool_ref[0].notify()

    bus: EventBus
    relay_bus = RelayBus(relay, on_wake=wake, on_lost=stop.set) if relay else None
    bus = RedisBus.from_url(settings.redis_url) if settings.redis_url else relay_bus  # type: ignore[assignment]
    if bus is None:
        raise SystemExit("revision worker: neither DOCKYARD_REDIS_URL nor DOCKYARD_RELAY_SOCKET")
    registry = GraphRegistry(project)
    registry.load_all()
    store = DockyardStore(storage, ttl=project.store.get("ttl") if project.store else None)
    # Deliveries are rows written with the run's outcome; the parent's delivery loop sends them.
    webhooks = WebhookDeliverer(
        WebhookDeliveries(storage), policy=UrlPolicy(allow_private=True),
        secret_for=lambda *_: None, max_attempts=settings.webhook_max_attempts)
    deps = ExecutionDeps(storage=storage, bus=bus, registry=registry, store=store,
                         webhooks=webhooks)
    pool = WorkerPool(deps, concurrency=settings.revision_workers,
                      lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
                      embedded=False, revision=revision)
    pool_ref.append(pool)
    await storage.open()
    if relay_bus is not None:
        await relay_bus.open()
    if bus is not relay_bus:
        await bus.open()
    store.bind_loop(asyncio.get_running_loop())
    def on_runs(kind: str) -> None:
        if kind != "base":  # base runs are not this revision's
            pool.notify()

    await storage.listen_runs(on_runs)  # PostgreSQL; on SQLite the relay wakes us
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await pool.start()
    log.info("revision_worker_started revision_id=%s graphs=%s pid=%d", revision,
             registry.graph_ids, os.getpid())
    await stop.wait()
    watchdog.cancel()
    await pool.stop(grace_seconds=settings.shutdown_grace_seconds)
    with contextlib.suppress(Exception):
        await bus.aclose()
        if relay_bus is not None and relay_bus is not bus:
            await relay_bus.aclose()
    await storage.close()
    log.info("revision_worker_stopped revision_id=%s", revision)
    return 0


async def _watch_parent(parent: int, stop: asyncio.Event, every: float = 1.0) -> None:
    """Stop when the supervising process ``parent`` is gone (SIGKILL, OOM), also if it went
    before this process got going: a revision worker must not outlive the process that
    decides whether its revision is live."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("revision_worker_orphaned parent=%d: stopping", parent)
            stop.set()
            return
        await asyncio.sleep(every)


def main() -> int:
    return run_process(serve())


if __name__ == "__main__":
    sys.exit(main())
