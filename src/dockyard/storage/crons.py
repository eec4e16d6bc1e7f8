"""Shared SQL for crons: CRUD scoped by tenant, and the scheduler's claims (all tenants).

A tick is claimed with a compare-and-set on ``next_run_date``: of several schedulers that
read the same due row, only the one whose UPDATE still finds the old ``next_run_date`` wins,
on SQLite and PostgreSQL alike. The winner's ``claim_token`` stays on the row until the
transaction that inserts the tick's run clears it (see services/crons.py).
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidInput
from dockyard.storage.base import Storage, dumps, utcnow

CRON_COLS = (
    "cron_id, tenant_id, assistant_id, thread_id, schedule, timezone, payload, metadata,"
    " enabled, next_run_date, end_time, on_run_completed, user_id, created_at, updated_at,"
    " claim_token, claimed_tick, claimed_at"
)

SORTABLE = ("cron_id", "assistant_id", "thread_id", "created_at", "updated_at", "next_run_date",
            "end_time")
_JSON = ("payload", "metadata")


class Crons:
    def __init__(self, db: Storage) -> None:
        self.db = db

    # ---- CRUD (one tenant) -----------------------------------------------------------------
    async def insert(self, tenant: str, row: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        await self.db.execute(
            "INSERT INTO crons (cron_id, tenant_id, assistant_id, thread_id, schedule, timezone,"
            " payload, metadata, enabled, next_run_date, end_time, on_run_completed, user_id,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["cron_id"], tenant, row["assistant_id"], row.get("thread_id"),
                row["schedule"], row.get("timezone"), dumps(row["payload"]),
                dumps(row["metadata"]), int(row["enabled"]), row.get("next_run_date"),
                row.get("end_time"), row.get("on_run_completed"), None, now, now,
            ),
        )
        got = await self.get(tenant, row["cron_id"])
        assert got is not None
        return got

    async def get(self, tenant: str, cron_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            f"SELECT {CRON_COLS} FROM crons WHERE tenant_id = ? AND cron_id = ?",
            (tenant, cron_id),
        )

    async def update(self, tenant: str, cron_id: str, **fields: Any) -> int:
        sets, params = [], []
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            params.append(dumps(value) if key in _JSON else value)
        sets.append("updated_at = ?")
        params.append(utcnow())
        return await self.db.execute(
            f"UPDATE crons SET {', '.join(sets)} WHERE tenant_id = ? AND cron_id = ?",
            [*params, tenant, cron_id],
        )

    async def delete(self, tenant: str, cron_id: str) -> int:
        return await self.db.execute(
            "DELETE FROM crons WHERE tenant_id = ? AND cron_id = ?", (tenant, cron_id)
        )

    def _where(
        self, tenant: str, *, assistant_id: str | None, thread_id: str | None,
        enabled: bool | None, metadata: dict[str, Any] | None,
        auth_filter: dict[str, Any] | None = None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = ["tenant_id = ?"]
        params: list[Any] = [tenant]
        for col, value in (("assistant_id", assistant_id), ("thread_id", thread_id)):
            if value is not None:
                clauses.append(f"{col} = ?")
                params.append(value)
        if enabled is not None:
            clauses.append("enabled = ?")
            params.append(int(enabled))
        self.db.json_filter("metadata", metadata, clauses, params)
        self.db.auth_filter("metadata", auth_filter, clauses, params)
        return " AND ".join(clauses), params

    async def search(
        self, tenant: str, *, assistant_id: str | None = None, thread_id: str | None = None,
        enabled: bool | None = None, metadata: dict[str, Any] | None = None, limit: int = 10,
        offset: int = 0, sort_by: str | None = None, sort_order: str | None = None,
        auth_filter: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        where, params = self._where(tenant, assistant_id=assistant_id, thread_id=thread_id,
                                    enabled=enabled, metadata=metadata, auth_filter=auth_filter)
        col = sort_by or "created_at"
        if col not in SORTABLE:
            raise InvalidInput(f"Cannot sort crons by {col!r}; use one of {list(SORTABLE)}")
        order = (sort_order or "desc").upper()
        if order not in ("ASC", "DESC"):
            raise InvalidInput("sort_order must be 'asc' or 'desc'")
        # NULLs last in both dialects (they disagree by default); cron_id breaks ties so that
        # pages never overlap.
        return await self.db.fetchall(
            f"SELECT {CRON_COLS} FROM crons WHERE {where}"
            f" ORDER BY {col} IS NULL, {col} {order}, cron_id {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )

    async def count(
        self, tenant: str, *, assistant_id: str | None = None, thread_id: str | None = None,
        enabled: bool | None = None, metadata: dict[str, Any] | None = None,
        auth_filter: dict[str, Any] | None = None,
    ) -> int:
        where, params = self._where(tenant, assistant_id=assistant_id, thread_id=thread_id,
                                    enabled=enabled, metadata=metadata, auth_filter=auth_filter)
        row = await self.db.fetchone(f"SELECT COUNT(*) AS n FROM crons WHERE {where}", params)
        return int(row["n"]) if row else 0

    # ---- the scheduler (all tenants) -------------------------------------------------------
    async def due(self, now: str, limit: int) -> list[dict[str, Any]]:
        """Enabled crons whose next tick has come and that no scheduler is firing."""
        return await self.db.fetchall(
            f"SELECT {CRON_COLS} FROM crons WHERE enabled = 1 AND next_run_date <= ?"
            " AND claim_token IS NULL ORDER BY next_run_date LIMIT ?",
            (now, limit),
        )

    async def earliest(self) -> str | None:
        """When the next tick of any enabled cron is due (the scheduler's wake-up)."""
        row = await self.db.fetchone(
            "SELECT MIN(next_run_date) AS t FROM crons WHERE enabled = 1"
            " AND claim_token IS NULL"
        )
        return row["t"] if row else None

    async def claim(
        self, tenant: str, cron_id: str, tick: str, next_run_date: str | None, token: str
    ) -> bool:
        """Take the tick ``tick`` and move ``next_run_date`` past it, if no one did first."""
        n = await self.db.execute(
            "UPDATE crons SET next_run_date = ?, claim_token = ?, claimed_tick = ?,"
            " claimed_at = ? WHERE tenant_id = ? AND cron_id = ? AND next_run_date = ?"
            " AND claim_token IS NULL AND enabled = 1",
            (next_run_date, token, tick, utcnow(), tenant, cron_id, tick),
        )
        return n == 1

    async def stale_claims(self, before: str | None) -> list[dict[str, Any]]:
        """Claims taken before ``before`` (None: all) whose run was never written: their
        scheduler died between claiming the tick and firing it."""
        sql = f"SELECT {CRON_COLS} FROM crons WHERE claim_token IS NOT NULL"
        params: list[Any] = []
        if before is not None:
            sql += " AND claimed_at < ?"
            params.append(before)
        return await self.db.fetchall(sql + " ORDER BY claimed_at", params)

    async def take_over(self, cron_id: str, old_token: str, new_token: str) -> bool:
        n = await self.db.execute(
            "UPDATE crons SET claim_token = ?, claimed_at = ? WHERE cron_id = ?"
            " AND claim_token = ?",
            (new_token, utcnow(), cron_id, old_token),
        )
        return n == 1

    async def release(self, cron_id: str, token: str, *, tx: Any = None) -> bool:
        """Clear a claim; False if it is no longer ours (another scheduler took it over)."""
        n = await self.db.execute_in(
            tx,
            "UPDATE crons SET claim_token = NULL, claimed_tick = NULL, claimed_at = NULL"
            " WHERE cron_id = ? AND claim_token = ?",
            (cron_id, token),
        )
        return n == 1
