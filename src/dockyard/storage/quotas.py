"""Per-tenant quotas and the usage they are checked against (migration 0010)."""

from __future__ import annotations

from typing import Any

from dockyard.storage.base import Storage, utcnow

QUOTA_FIELDS = ("max_concurrent_runs", "runs_per_minute", "max_stored_bytes")


class Quotas:
    def __init__(self, db: Storage) -> None:
        self.db = db

    async def get(self, tenant: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            f"SELECT tenant_id, {', '.join(QUOTA_FIELDS)}, updated_at FROM tenant_quotas"
            " WHERE tenant_id = ?", (tenant,))

    async def set(self, tenant: str, values: dict[str, int | None]) -> None:
        """Upsert the tenant's row; fields absent from ``values`` keep their value."""
        row = await self.get(tenant) or {}
        merged = {f: values[f] if f in values else row.get(f) for f in QUOTA_FIELDS}
        await self.db.execute(
            f"INSERT INTO tenant_quotas (tenant_id, {', '.join(QUOTA_FIELDS)}, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET"
            " max_concurrent_runs = excluded.max_concurrent_runs,"
            " runs_per_minute = excluded.runs_per_minute,"
            " max_stored_bytes = excluded.max_stored_bytes, updated_at = excluded.updated_at",
            (tenant, *(merged[f] for f in QUOTA_FIELDS), utcnow()),
        )

    async def in_flight(self, tx: Any, tenant: str) -> int:
        rows = await self.db._fetch(
            tx, "SELECT COUNT(*) AS n FROM runs WHERE tenant_id = ?"
            " AND status IN ('pending', 'running')", (tenant,))
        return int(rows[0]["n"]) if rows else 0

    async def window_runs(self, tx: Any, tenant: str, window: str) -> int:
        rows = await self.db._fetch(
            tx, "SELECT runs FROM tenant_run_windows WHERE tenant_id = ? AND window_start = ?",
            (tenant, window))
        return int(rows[0]["runs"]) if rows else 0

    async def count_run(self, tx: Any, tenant: str, window: str) -> None:
        await self.db._execute(
            tx, "INSERT INTO tenant_run_windows (tenant_id, window_start, runs) VALUES (?, ?, 1)"
            " ON CONFLICT (tenant_id, window_start) DO UPDATE SET"
            " runs = tenant_run_windows.runs + 1", (tenant, window))
        # Past windows are never read again.
        await self.db._execute(
            tx, "DELETE FROM tenant_run_windows WHERE tenant_id = ? AND window_start < ?",
            (tenant, window))

    async def stored_bytes(self, tenant: str) -> int:
        """Bytes of the tenant's store items and thread states (JSON text)."""
        items, states = self.db.byte_length("value"), self.db.byte_length('"values"')
        row = await self.db.fetchone(
            f"SELECT (SELECT COALESCE(SUM({items}), 0) FROM store_items WHERE tenant_id = ?)"
            f" + (SELECT COALESCE(SUM({states}), 0) FROM threads WHERE tenant_id = ?) AS n",
            (tenant, tenant))
        return int(row["n"]) if row else 0
