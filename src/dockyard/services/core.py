"""The Dockyard application object: wires storage, event bus, registry, workers and services.

The API (and the CLI) build one ``Dockyard`` and call ``start()`` / ``stop()`` around it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dockyard import __version__
from dockyard.config import ProjectConfig, Settings
from dockyard.errors import ConfigError
from dockyard.runtime.executor import ExecutionDeps
from dockyard.runtime.loader import GraphRegistry
from dockyard.runtime.metrics import Metrics
from dockyard.runtime.relay import RelayServer
from dockyard.runtime.supervisor import RevisionSupervisor
from dockyard.runtime.tracing import run_tracer, tracer_provider_from_env
from dockyard.runtime.webhooks import UrlPolicy, WebhookDeliverer
from dockyard.runtime.worker import WorkerPool
from dockyard.services.a2a import A2AService
from dockyard.services.assistants import AssistantService
from dockyard.services.auth import KeyService
from dockyard.services.cron_scheduler import CronScheduler
from dockyard.services.crons import CronService
from dockyard.services.custom_auth import CustomAuth, load_custom_auth
from dockyard.services.deployments import DeploymentService
from dockyard.services.mcp import McpService
from dockyard.services.protocol import ThreadProtocol
from dockyard.services.quotas import Limits, QuotaService
from dockyard.services.revisions import RevisionService
from dockyard.services.runs import RunService
from dockyard.services.store import StoreService
from dockyard.services.threads import ThreadService
from dockyard.services.traces import TraceService
from dockyard.services.triggers import DockyardSection, TriggerService, parse_dockyard_section
from dockyard.services.webhooks import WebhookService
from dockyard.storage import create_storage
from dockyard.storage.kvstore import DockyardStore
from dockyard.storage.resources import Assistants
from dockyard.storage.webhooks import TriggerEvents, WebhookDeliveries
from dockyard.streams.base import EventBus
from dockyard.streams.memory import InProcessBus
from dockyard.streams.redis import RedisBus

log = logging.getLogger("dockyard")

DEFAULT_TENANT = "default"


HTTP_KEYS = {
    "cors", "disable_assistants", "disable_threads", "disable_runs", "disable_store", "disable_meta",
    "disable_mcp", "disable_a2a",
}
THREAD_TTL_KEYS = {"strategy", "default_ttl", "sweep_interval_minutes"}
STORE_KEYS = {"ttl"}
# `path`: a langgraph_sdk.Auth object (services/custom_auth.py). `openapi` only documents the
# security scheme and `disable_studio_auth` concerns a Studio user Dockyard does not have.
AUTH_KEYS = {"path", "openapi", "disable_studio_auth"}


def check_project_features(project: ProjectConfig) -> DockyardSection:
    """Refuse config that Dockyard would otherwise silently ignore; return the validated
    ``dockyard`` section (triggers, webhook secrets)."""
    src = str(project.source)
    for key in project.auth or {}:
        if key not in AUTH_KEYS:
            raise ConfigError(f"unsupported auth option; supported: {sorted(AUTH_KEYS)}",
                              file=src, key=f"auth.{key}")
    for key in project.http:
        if key not in HTTP_KEYS:
            raise ConfigError(f"unsupported http option; supported: {sorted(HTTP_KEYS)}",
                              file=src, key=f"http.{key}")
    for key in project.store:
        if key not in STORE_KEYS:
            raise ConfigError("unsupported store option (semantic search indexes are not "
                              f"available); supported: {sorted(STORE_KEYS)}",
                              file=src, key=f"store.{key}")
    ttl = project.checkpointer_ttl or {}
    for key in ttl:
        if key not in THREAD_TTL_KEYS:
            raise ConfigError(f"unsupported option; supported: {sorted(THREAD_TTL_KEYS)}",
                              file=src, key=f"checkpointer.ttl.{key}")
    if ttl.get("strategy", "delete") != "delete":
        raise ConfigError("only the 'delete' strategy is supported", file=src,
                          key="checkpointer.ttl.strategy")
    for key in ("default_ttl", "sweep_interval_minutes"):
        value = ttl.get(key)
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            raise ConfigError("must be a positive number of minutes", file=src,
                              key=f"checkpointer.ttl.{key}")
    return parse_dockyard_section(project)


ROLES = ("all", "api", "worker")


class Dockyard:
    """The application; ``role`` says which parts run in this process.

    * ``all``    — API and workers in one process (``dockyard dev``; any database).
    * ``api``    — HTTP only; runs are executed by ``worker`` processes elsewhere.
    * ``worker`` — claims and executes runs; no HTTP.
    Split roles need PostgreSQL (shared queue, LISTEN/NOTIFY wake-ups) and Redis (events and
    cancellation across processes).
    """

    def __init__(
        self, project: ProjectConfig, settings: Settings, *, dev: bool = False, role: str = "all"
    ) -> None:
        section = check_project_features(project)
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}; use one of {list(ROLES)}")
        if role != "all" and not settings.is_production:
            raise ConfigError(
                f"the '{role}' role runs apart from the other processes, which needs "
                "DOCKYARD_DATABASE_URL=postgresql://… and DOCKYARD_REDIS_URL=redis://…",
                key="DOCKYARD_DATABASE_URL",
            )
        self.role = role
        self.project = project
        self.settings = settings
        self.dev = dev
        db_path = settings.sqlite_path(project.root)
        self.storage = create_storage(settings.database_url, default_path=db_path)
        self.bus: EventBus = (
            RedisBus.from_url(settings.redis_url) if settings.redis_url else InProcessBus()
        )
        self.registry = GraphRegistry(project)
        store_ttl = project.store.get("ttl") if isinstance(project.store, dict) else None
        self.store = DockyardStore(self.storage, ttl=store_ttl)
        self.webhook_policy = UrlPolicy(
            allow_private=settings.allow_private_webhooks or dev,
            allowed_domains=settings.webhook_allowed_domains,
            require_https=settings.webhook_require_https and not dev,
        )
        self.webhook_log = WebhookService(
            WebhookDeliveries(self.storage), secret_envs=section.webhook_secrets,
            global_secret=settings.webhook_secret,
        )
        self.webhooks = WebhookDeliverer(
            self.webhook_log.deliveries, policy=self.webhook_policy,
            secret_for=self.webhook_log.secret_for,
            max_attempts=settings.webhook_max_attempts,
            backoff_seconds=settings.webhook_backoff_seconds,
            backoff_max_seconds=settings.webhook_backoff_max_seconds,
            timeout=settings.webhook_timeout_seconds,
        )
        self.metrics = Metrics(role=role)
        self.tracer_provider = tracer_provider_from_env(role)  # None: tracing off
        self.deps = ExecutionDeps(
            storage=self.storage, bus=self.bus, registry=self.registry, store=self.store,
            webhooks=self.webhooks, metrics=self.metrics, tracer=run_tracer(self.tracer_provider),
            record_traces=settings.traces, trace_max_value_bytes=settings.trace_max_value_bytes,
        )
        self.pool = WorkerPool(
            self.deps, concurrency=settings.workers, lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts, tenant_limit=settings.tenant_max_running,
            assistant_limit=settings.assistant_max_running,
            # One process owning a SQLite file may treat every 'running' row as orphaned.
            embedded=self.storage.dialect == "sqlite",
        )
        self._notify_tasks: set[asyncio.Task[None]] = set()
        self.assistants = AssistantService(Assistants(self.storage), self.registry)
        self.deployments = DeploymentService(self.storage, base_graphs=self.registry.graph_ids)
        self.threads = ThreadService(self.storage, self.registry, self.store)
        self.quotas = QuotaService(self.storage, Limits(
            max_concurrent_runs=settings.tenant_max_concurrent_runs,
            runs_per_minute=settings.tenant_runs_per_minute,
            max_stored_bytes=settings.tenant_max_stored_bytes,
        ))
        self.runs = RunService(
            self.deps, self.assistants, self.threads, self.notify_new_runs,
            webhook_policy=self.webhook_policy, max_queue_depth=settings.max_queue_depth,
            deployments=self.deployments,
            quotas=self.quotas,
        )
        # Tenants seen for the first time get their graphs' default assistants.
        oidc = None
        methods = settings.auth if settings.auth != "none" else ""
        self.custom_auth: CustomAuth | None = None  # loaded in start(), with the graphs
        if (project.auth or {}).get("path"):
            methods = f"{methods},custom"
        if "oidc" in settings.auth.split(","):
            from dockyard.services.oidc import OidcConfig, OidcVerifier

            oidc = OidcVerifier(OidcConfig.from_settings(settings))
        self.auth = KeyService(self.storage, mode=methods or "none",
                               on_tenant=self.assistants.ensure_defaults, oidc=oidc)
        self.triggers = TriggerService(section.triggers, TriggerEvents(self.storage), self.runs)
        self.store_api = StoreService(self.store, self.quotas)
        self.traces = TraceService(self.storage, self.runs)
        self.protocol = ThreadProtocol(self.runs, self.threads)
        self.mcp = McpService(self.assistants, self.runs, version=__version__)
        self.a2a = A2AService(self.assistants, self.threads, self.runs)
        self.revisions = RevisionService(self.storage, max_bytes=settings.max_revision_bytes,
                                         max_files=settings.max_revision_files,
                                         envs_root=self.data_dir / "envs",
                                         pip_args=settings.revision_pip_args)
        # Revisions serve from worker processes of their own, spawned by every process that
        # executes runs; in embedded mode they reach this process's bus through the relay.
        self.relay: RelayServer | None = None
        self.supervisor: RevisionSupervisor | None = None
        if self.runs_workers:
            if self.storage.dialect == "sqlite" or not settings.redis_url:
                self.relay = RelayServer(self.bus, Path(tempfile.gettempdir())
                                         / f"dockyard-relay-{uuid.uuid4().hex[:12]}.sock")
            self.supervisor = RevisionSupervisor(
                self.deployments, settings, data_dir=self.data_dir, relay=self.relay,
                database_url=settings.database_url or f"sqlite:///{db_path.resolve()}")
        self.crons = CronService(self.storage, self.runs, self.notify_crons)
        self.scheduler = CronScheduler(
            self.crons, poll_seconds=settings.cron_poll_seconds,
            embedded=self.storage.dialect == "sqlite",
        )
        self._sweeper: asyncio.Task[None] | None = None
        self._thread_sweeper: asyncio.Task[None] | None = None

    @property
    def runs_workers(self) -> bool:
        return self.role in ("all", "worker")

    def notify_new_runs(self, kind: str = "", *, others_told: bool = False) -> None:
        """A run was queued: wake this process's pool and, across processes, everyone else's.

        ``kind="base"``: only runs of the base project (no revision), which neither the
        revision supervisors nor their children need to hear of; ``""``: anything else.
        ``others_told``: the NOTIFY was sent with the run's transaction (``RunService.write``).
        """
        if self.runs_workers:
            self.pool.notify()
            if kind != "base":
                if self.relay is not None:
                    self.relay.wake()
                if self.supervisor is not None:
                    self.supervisor.notify()
        if self.storage.dialect != "sqlite" and not others_told:
            task = asyncio.create_task(self.storage.notify_runs(kind))
            self._notify_tasks.add(task)
            task.add_done_callback(self._notify_tasks.discard)

    def notify_crons(self) -> None:
        """A cron was created or changed: wake this process's scheduler and, across processes,
        the others (the run notification wakes both the worker pools and the schedulers)."""
        if self.runs_workers:
            self.scheduler.notify()
        if self.storage.dialect != "sqlite":
            task = asyncio.create_task(self.storage.notify_runs())
            self._notify_tasks.add(task)
            task.add_done_callback(self._notify_tasks.discard)

    def _on_notification(self, kind: str) -> None:
        self.pool.notify()
        if kind != "base":  # a base run is no news to the cron scheduler or the supervisor
            self.scheduler.notify()
            if self.supervisor is not None:
                self.supervisor.notify()

    @property
    def data_dir(self) -> Path:
        return self.settings.data_path(self.project.root)

    @property
    def serves_http(self) -> bool:
        return self.role in ("all", "api")

    async def start(self) -> None:
        self.project.apply_env()
        src = str(self.project.source)
        # Secrets are read where they are used: triggers answer HTTP, webhooks leave workers.
        if self.serves_http:
            self.triggers.load_secrets(src)
        if self.runs_workers:
            self.webhook_log.load_secrets(src)
        self.registry.load_all()
        if "custom" in self.auth.methods:
            self.custom_auth = load_custom_auth(self.project.root, src, self.project.auth or {})
        await self.storage.open()
        await self.storage.migrate()
        await self.bus.open()
        self.store.bind_loop(asyncio.get_running_loop())
        for tenant in await self.auth.tenants.list():  # graphs added since: defaults for all
            await self.auth.tenant_seen(tenant["id"])
        if self.runs_workers:
            await self.storage.listen_runs(self._on_notification)
            await self.pool.start()
            await self.scheduler.start()
            await self.webhooks.start()
            if self.relay is not None:
                await self.relay.start()
            if self.supervisor is not None:
                await self.supervisor.start()
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="dockyard-store-sweeper")
        ttl = self.project.checkpointer_ttl or {}
        if ttl.get("default_ttl"):
            self._thread_sweeper = asyncio.create_task(
                self._thread_ttl_loop(float(ttl["default_ttl"]),
                                      float(ttl.get("sweep_interval_minutes", 5))),
                name="dockyard-thread-ttl",
            )
        log.info("dockyard_started role=%s graphs=%s db=%s", self.role, self.registry.graph_ids,
                 self.storage.dialect)

    async def stop(self) -> None:
        for task in (self._sweeper, self._thread_sweeper):
            if task is not None:
                task.cancel()
        if self.runs_workers:
            await self.scheduler.stop()
            if self.supervisor is not None:
                await self.supervisor.stop(self.settings.shutdown_grace_seconds)
            if self.relay is not None:
                await self.relay.stop()
            await self.pool.stop(grace_seconds=self.settings.shutdown_grace_seconds)
        if self.runs_workers:
            await self.webhooks.stop()
        await self.bus.aclose()
        await self.storage.close()
        if self.tracer_provider is not None:  # export the last spans (a blocking HTTP call)
            await asyncio.to_thread(self.tracer_provider.shutdown)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await self.store.sweep_expired()
                await self.sweep_webhook_records()
                await self.sweep_traces()
            except Exception:
                log.exception("store_sweep_failed")

    async def sweep_webhook_records(self) -> None:
        """Retention of the delivery log and of trigger idempotency keys."""
        days = self.settings.webhook_retention_days
        cutoff = (datetime.now(UTC) - timedelta(days=days)).isoformat()
        await self.webhook_log.deliveries.sweep(cutoff)
        await self.triggers.events.sweep(cutoff)

    async def sweep_traces(self) -> int:
        """Retention of run traces (``DOCKYARD_TRACE_RETENTION_DAYS``), every tenant's."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.trace_retention_days)
        n = await self.traces.sweep(cutoff.isoformat())
        if n:
            log.info("traces_expired count=%d", n)
        return n

    async def sweep_expired_threads(self, ttl_minutes: float) -> int:
        """Delete threads (and their checkpoints) not updated for ``ttl_minutes``."""
        cutoff = (datetime.now(UTC) - timedelta(minutes=ttl_minutes)).isoformat()
        expired = await self.threads.repo.older_than(cutoff, limit=1000)
        # Each tenant's threads are deleted through that tenant's scope, like any API call.
        return sum([await self.threads.prune(tenant, ids, "delete")
                    for tenant, ids in expired.items()])

    async def _thread_ttl_loop(self, ttl_minutes: float, interval_minutes: float) -> None:
        while True:
            await asyncio.sleep(interval_minutes * 60)
            try:
                n = await self.sweep_expired_threads(ttl_minutes)
                if n:
                    log.info("threads_expired count=%d", n)
            except Exception:
                log.exception("thread_ttl_sweep_failed")

    async def metrics_text(self) -> bytes:
        """Prometheus text exposition of this process (queue depth is cluster-wide)."""
        return await self.metrics.render(self.deps.queue.depth_by)

    async def check_health(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Ping the database and the event bus (``/ok?check_db=1``)."""
        from dockyard.services.health import check_dependencies

        return await check_dependencies(
            {"database": self.storage.ping, "bus": self.bus.ping},
            secret_urls=(self.settings.database_url, self.settings.redis_url),
        )

    def info(self) -> dict[str, Any]:
        from dockyard import __version__

        return {
            "version": __version__,
            "langgraph_py_version": _version("langgraph"),
            "flags": {"assistants": True, "crons": True, "langsmith": False},
            "host": {"kind": "dockyard", "project_id": None, "revision_id": None},
            "graphs": self.registry.graph_ids,
            "database": self.storage.dialect,
            "auth": self.settings.auth,  # the debugger says why its audit page is empty
        }


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None
