"""Per-tenant quotas: runs in flight, runs created per minute, stored bytes.

Limits come from ``tenant_quotas`` (set by the operator: CLI or the default tenant's admins)
over the server's defaults (``DOCKYARD_TENANT_*``); 0 is unlimited. Run quotas are checked in
the transaction that writes the run (``RunService.write``, so API runs and cron runs alike),
under a per-tenant lock (``Storage.lock_key``: a transaction advisory lock on PostgreSQL,
the single writer on SQLite), so API replicas cannot race past a limit together. Stored bytes
(store items + thread states) are a `SUM` over the tenant's rows, cached per process for
``USAGE_CACHE_SECONDS``: checked before run creation and store writes, approximate by design.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from dockyard.errors import InvalidInput, TooManyRequests
from dockyard.storage.base import Storage
from dockyard.storage.quotas import QUOTA_FIELDS, Quotas


class QuotaExceeded(TooManyRequests):
    code = "quota_exceeded"


@dataclass(frozen=True)
class Limits:
    max_concurrent_runs: int = 0
    runs_per_minute: int = 0
    max_stored_bytes: int = 0

    @property
    def any(self) -> bool:
        return bool(self.max_concurrent_runs or self.runs_per_minute or self.max_stored_bytes)


class QuotaService:
    LIMITS_CACHE_SECONDS = 5.0   # a change made on another replica applies within this
    USAGE_CACHE_SECONDS = 10.0

    def __init__(self, db: Storage, defaults: Limits) -> None:
        self.db = db
        self.repo = Quotas(db)
        self.defaults = defaults
        self._limits: dict[str, tuple[Limits, float]] = {}
        self._usage: dict[str, tuple[int, float]] = {}

    async def limits(self, tenant: str) -> Limits:
        hit = self._limits.get(tenant)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        row = await self.repo.get(tenant) or {}
        limits = Limits(**{f: int(row[f]) if row.get(f) is not None
                           else getattr(self.defaults, f) for f in QUOTA_FIELDS})
        self._limits[tenant] = (limits, time.monotonic() + self.LIMITS_CACHE_SECONDS)
        return limits

    async def set(self, tenant: str, values: dict[str, Any]) -> dict[str, Any]:
        for name, value in values.items():
            if name not in QUOTA_FIELDS:
                raise InvalidInput(f"unknown quota {name!r}; quotas: {list(QUOTA_FIELDS)}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 0):
                raise InvalidInput(f"{name} must be a non-negative integer (0: unlimited) or "
                                   "null (the server's default)")
        await self.repo.set(tenant, values)
        self._limits.pop(tenant, None)
        return await self.describe(tenant)

    async def stored_bytes(self, tenant: str, *, fresh: bool = False) -> int:
        hit = self._usage.get(tenant)
        if not fresh and hit is not None and hit[1] > time.monotonic():
            return hit[0]
        n = await self.repo.stored_bytes(tenant)
        self._usage[tenant] = (n, time.monotonic() + self.USAGE_CACHE_SECONDS)
        return n

    def forget_usage(self, tenant: str) -> None:
        """This process wrote the tenant's data: the next check sums it again."""
        self._usage.pop(tenant, None)

    async def describe(self, tenant: str) -> dict[str, Any]:
        """Effective limits and current usage (the admin API, the CLI)."""
        limits = await self.limits(tenant)
        async with self.db.transaction() as tx:
            in_flight = await self.repo.in_flight(tx, tenant)
            this_minute = await self.repo.window_runs(tx, tenant, _window())
        return {"tenant_id": tenant, "limits": asdict(limits),
                "configured": {k: v for k, v in (await self.repo.get(tenant) or {}).items()
                               if k in QUOTA_FIELDS},
                "usage": {"runs_in_flight": in_flight, "runs_this_minute": this_minute,
                          "stored_bytes": await self.stored_bytes(tenant, fresh=True)}}

    # ---- enforcement ----------------------------------------------------------------------
    async def check_stored_bytes(self, tenant: str, limits: Limits | None = None) -> None:
        limits = limits or await self.limits(tenant)
        if limits.max_stored_bytes and (
                await self.stored_bytes(tenant)) >= limits.max_stored_bytes:
            raise QuotaExceeded(
                f"Tenant '{tenant}' stores {await self.stored_bytes(tenant)} bytes, at its "
                f"quota of {limits.max_stored_bytes} (max_stored_bytes); delete threads or "
                "store items, or ask the operator to raise it",
                retry_after=int(self.USAGE_CACHE_SECONDS))

    async def before_run(self, tenant: str) -> Limits:
        """Outside any transaction: the tenant's limits (for ``check_run``) and the
        stored-bytes check."""
        limits = await self.limits(tenant)
        await self.check_stored_bytes(tenant, limits)
        return limits

    async def check_run(self, tx: Any, tenant: str, limits: Limits) -> None:
        """In the run's transaction: 429 over the in-flight or per-minute quota, else count
        the run in this minute's window."""
        if not (limits.max_concurrent_runs or limits.runs_per_minute):
            return
        await self.db.lock_key(tx, f"quota:{tenant}")
        if limits.max_concurrent_runs:
            n = await self.repo.in_flight(tx, tenant)
            if n >= limits.max_concurrent_runs:
                raise QuotaExceeded(
                    f"Tenant '{tenant}' has {n} runs pending or running, its quota "
                    f"(max_concurrent_runs={limits.max_concurrent_runs}); retry when one "
                    "finishes", retry_after=5)
        if limits.runs_per_minute:
            window = _window()
            n = await self.repo.window_runs(tx, tenant, window)
            if n >= limits.runs_per_minute:
                wait = 60 - datetime.now(UTC).second
                raise QuotaExceeded(
                    f"Tenant '{tenant}' created {n} runs this minute, its quota "
                    f"(runs_per_minute={limits.runs_per_minute}); retry in {wait} s",
                    retry_after=max(1, math.ceil(wait)))
            await self.repo.count_run(tx, tenant, window)


def _window() -> str:
    """The current minute (UTC), the key of the per-minute counter."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")
