"""Prometheus metrics of one Dockyard process, in a registry of its own.

A per-app ``CollectorRegistry`` (not prometheus_client's global one) lets several apps live in
one process (tests, embedded use) without "duplicated timeseries" errors.

What is counted where:

* queue depth — computed at scrape time from the runs table (``RunQueue.depth_by``), so every
  replica reports the same, cluster-wide figure; the autoscaler reads it from any of them.
* run latency (runnable → started), run duration (by final status), retries — observed by the
  worker pool that executes the run, so they appear on worker processes' ``/metrics``.
* lease expiries — counted by the pool whose sweeper recovered the runs.
* active runs, workers, heartbeat — this process only; ``sum()`` them across processes.
  Gauges read the pool at scrape time, so the hot path pays nothing for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from dockyard.storage.queue import first_claim

log = logging.getLogger("dockyard.metrics")

# Queue latency is milliseconds when healthy and minutes under a backlog.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 300.0, 900.0)
# Agent runs take from milliseconds (a plain callable) to hours (long tool chains).
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 1800.0, 3600.0, 14400.0)

DepthQuery = Callable[[], Awaitable[list[dict[str, Any]]]]


class _Pool(Protocol):
    worker_id: str
    concurrency: int

    @property
    def active_runs(self) -> int: ...


class _QueueDepth(Collector):
    """``dockyard_queue_depth`` from the last snapshot taken by ``Metrics.render``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "dockyard_queue_depth", "Runs in the queue (all processes), by tenant, status and priority",
            labels=["tenant", "status", "priority"],
        )
        for row in self.rows:
            family.add_metric([str(row["tenant_id"]), str(row["status"]), str(row["priority"])],
                              float(row["n"]))
        yield family


def _seconds_between(start: Any, end: Any) -> float | None:
    if not start or not end:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(str(end))
                         - datetime.fromisoformat(str(start))).total_seconds())
    except ValueError:
        return None


class Metrics:
    """The instruments; the executor and worker pool call the ``on_*`` hooks."""

    def __init__(self, *, role: str = "all") -> None:
        self.role = role
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._depth = _QueueDepth()
        r.register(self._depth)
        ProcessCollector(registry=r)
        self.run_latency = Histogram(
            "dockyard_run_queue_latency_seconds",
            "Time from a run becoming runnable (created, or its after_seconds passed) to its start",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.run_duration = Histogram(
            "dockyard_run_duration_seconds", "Time from a run's start to its end, by final status",
            ["status"], buckets=DURATION_BUCKETS, registry=r,
        )
        self.retries = Counter(
            "dockyard_run_retries", "Runs claimed again after their worker died (attempt > 1)",
            registry=r,
        )
        self.lease_expiries = Counter(
            "dockyard_lease_expiries",
            "Runs whose lease expired: requeued for another worker, or failed after max attempts",
            ["outcome"], registry=r,
        )
        for outcome in ("requeued", "failed"):  # both series exist from the start, at 0
            self.lease_expiries.labels(outcome=outcome)
        self.runs_active = Gauge(
            "dockyard_runs_active", "Runs executing in this process", registry=r,
        )
        self.workers_active = Gauge(
            "dockyard_workers_active",
            "1 while this process's worker pool claims runs (sum across processes = workers)",
            registry=r,
        )
        self.worker_slots = Gauge(
            "dockyard_worker_concurrency", "Runs this process's worker pool executes at once",
            registry=r,
        )
        self.heartbeat = Gauge(
            "dockyard_worker_heartbeat_timestamp_seconds",
            "Unix time of this worker's last lease heartbeat", registry=r,
        )
        self.info = Info("dockyard_worker", "This process: worker id and role", registry=r)
        self.info.info({"worker_id": "", "role": role})
        self.runs_active.set_function(lambda: 0)
        self._running = False

    # ---- worker pool -------------------------------------------------------------------
    def pool_started(self, pool: _Pool) -> None:
        self._running = True
        self.info.info({"worker_id": pool.worker_id, "role": self.role})
        self.runs_active.set_function(lambda: pool.active_runs)
        self.workers_active.set_function(lambda: 1.0 if self._running else 0.0)
        self.worker_slots.set(pool.concurrency)
        self.heartbeat.set(time.time())

    def pool_stopped(self) -> None:
        self._running = False

    def on_heartbeat(self) -> None:
        self.heartbeat.set(time.time())

    def on_claim(self, run: dict[str, Any]) -> None:
        """A run was claimed: retries, and queue latency when this claim is its first start."""
        if int(run.get("attempts") or 0) > 1:
            self.retries.inc()
        if first_claim(run):  # this claim started the run (not a resume)
            runnable = max(str(run.get("created_at") or ""), str(run.get("available_at") or ""))
            latency = _seconds_between(runnable, run["started_at"])
            if latency is not None:
                self.run_latency.observe(latency)

    def on_finish(self, run: dict[str, Any], status: str) -> None:
        duration = _seconds_between(run.get("started_at"), datetime.now(UTC).isoformat())
        if duration is not None:
            self.run_duration.labels(status=status).observe(duration)

    def on_lease_expiries(self, requeued: int, failed: int) -> None:
        if requeued:
            self.lease_expiries.labels(outcome="requeued").inc(requeued)
        if failed:
            self.lease_expiries.labels(outcome="failed").inc(failed)

    # ---- exposition --------------------------------------------------------------------
    async def render(self, depth: DepthQuery | None = None) -> bytes:
        """The text exposition; queue depth is queried first (collectors cannot await)."""
        if depth is not None:
            try:
                self._depth.rows = await depth()
            except Exception as exc:  # a scrape still reports the process's own metrics
                log.warning("queue_depth_failed error=%s", exc)
                self._depth.rows = []
        return generate_latest(self.registry)
