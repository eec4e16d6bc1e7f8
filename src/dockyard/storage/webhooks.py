"""Webhook delivery rows (outgoing) and trigger idempotency keys (incoming).

Deliveries are claimed like runs: in one transaction, due rows are selected with the dialect's
``claim_lock`` (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so concurrent processes take disjoint
rows; SQLite: one writer) and leased by moving ``next_attempt_at`` past the attempt's timeout.
An attempt's outcome is recorded only if the row is still at that attempt (``attempts = ?``),
so a slow process whose lease expired cannot overwrite a newer attempt's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dockyard.errors import Conflict
from dockyard.storage.base import Storage, utcnow

DELIVERY_COLS = (
    "delivery_id, tenant_id, run_id, thread_id, assistant_id, graph_id, url, body, status,"
    " attempts, max_attempts, next_attempt_at, last_status_code, last_error, created_at,"
    " updated_at, delivered_at"
)

Statement = tuple[str, Sequence[Any]]


def at(seconds_from_now: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).isoformat()


class WebhookDeliveries:
    def __init__(self, db: Storage) -> None:
        self.db = db

    @staticmethod
    def insert_statement(
        tenant: str, delivery_id: str, run: dict[str, Any], url: str, body: bytes,
        max_attempts: int,
    ) -> Statement:
        """The INSERT of a new, immediately due delivery: the executor runs it in the same
        transaction that records the run's outcome, so a finished run never loses its webhook."""
        now = utcnow()
        return (
            "INSERT INTO webhook_deliveries (delivery_id, tenant_id, run_id, thread_id,"
            " assistant_id, graph_id, url, body, status, attempts, max_attempts, next_attempt_at,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)",
            (delivery_id, tenant, run["run_id"], run.get("thread_id"), run.get("assistant_id"),
             run.get("graph_id"), url, body.decode(), max_attempts, now, now, now),
        )

    async def insert(self, *args: Any, **kwargs: Any) -> None:
        sql, params = self.insert_statement(*args, **kwargs)
        await self.db.execute(sql, params)

    async def claim(self, limit: int, lease_seconds: float) -> tuple[list[dict[str, Any]], list[str]]:
        """Take up to ``limit`` due deliveries for one attempt each.

        Returns the claimed rows (``attempts`` already counts this attempt) and the ids of rows
        failed here because their attempts were used up by processes that died mid-attempt.
        """
        now = utcnow()
        claimed: list[dict[str, Any]] = []
        exhausted: list[str] = []
        async with self.db.transaction() as tx:
            rows = await self.db._fetch(
                tx,
                "SELECT delivery_id, attempts, max_attempts FROM webhook_deliveries"
                " WHERE status = 'pending' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at LIMIT ?" + self.db.claim_lock,
                (now, limit),
            )
            for row in rows:
                if row["attempts"] >= row["max_attempts"]:
                    await self.db._execute(
                        tx,
                        "UPDATE webhook_deliveries SET status = 'failed', last_error = ?,"
                        " updated_at = ? WHERE delivery_id = ?",
                        (f"gave up after {row['attempts']} attempts (the last one was cut short:"
                         " its process stopped)", now, row["delivery_id"]),
                    )
                    exhausted.append(row["delivery_id"])
                    continue
                await self.db._execute(
                    tx,
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?,"
                    " updated_at = ? WHERE delivery_id = ?",
                    (at(lease_seconds), now, row["delivery_id"]),
                )
                got = await self.db._fetch(
                    tx, f"SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE delivery_id = ?",
                    (row["delivery_id"],),
                )
                claimed.append(got[0])
        return claimed, exhausted

    async def record(
        self, delivery_id: str, attempt: int, *, status: str, status_code: int | None,
        error: str | None, next_attempt_at: str | None = None,
    ) -> bool:
        """Store an attempt's outcome; False if another process has taken the row since."""
        now = utcnow()
        n = await self.db.execute(
            "UPDATE webhook_deliveries SET status = ?, last_status_code = ?, last_error = ?,"
            " next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?,"
            " delivered_at = CASE WHEN ? = 'succeeded' THEN ? ELSE delivered_at END"
            " WHERE delivery_id = ? AND attempts = ? AND status = 'pending'",
            (status, status_code, error, next_attempt_at, now, status, now, delivery_id, attempt),
        )
        return n > 0

    async def get(self, tenant: str, delivery_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            f"SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE tenant_id = ? AND delivery_id = ?",
            (tenant, delivery_id),
        )

    async def search(
        self, tenant: str, *, run_id: str | None = None, status: str | None = None,
        limit: int = 100, offset: int = 0,
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {DELIVERY_COLS} FROM webhook_deliveries WHERE tenant_id = ?"
        params: list[Any] = [tenant]
        if run_id is not None:
            sql += " AND run_id = ?"
            params.append(run_id)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY created_at DESC, delivery_id LIMIT ? OFFSET ?"
        return await self.db.fetchall(sql, [*params, limit, offset])

    async def next_due_at(self) -> str | None:
        row = await self.db.fetchone(
            "SELECT MIN(next_attempt_at) AS t FROM webhook_deliveries WHERE status = 'pending'"
        )
        return row["t"] if row else None

    async def sweep(self, before: str) -> int:
        """Forget finished deliveries last touched before ``before`` (retention)."""
        return await self.db.execute(
            "DELETE FROM webhook_deliveries WHERE updated_at < ?"
            " AND status IN ('succeeded', 'failed')",
            (before,),
        )


class TriggerEvents:
    """Idempotency keys of inbound trigger events (``trigger_events``)."""

    def __init__(self, db: Storage) -> None:
        self.db = db

    async def reserve(
        self, tenant: str, trigger: str, key: str, run_id: str, thread_id: str | None
    ) -> dict[str, Any] | None:
        """Record ``key`` for a run about to start; None if reserved, else the existing row."""
        try:
            await self.db.execute(
                "INSERT INTO trigger_events (tenant_id, trigger_name, idempotency_key, run_id,"
                " thread_id, started, created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                (tenant, trigger, key, run_id, thread_id, utcnow()),
            )
            return None
        except Conflict:
            return await self.get(tenant, trigger, key)

    async def get(self, tenant: str, trigger: str, key: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            "SELECT tenant_id, trigger_name, idempotency_key, run_id, thread_id, started,"
            " created_at FROM trigger_events WHERE tenant_id = ? AND trigger_name = ?"
            " AND idempotency_key = ?",
            (tenant, trigger, key),
        )

    async def take_over(
        self, tenant: str, trigger: str, key: str, stale: dict[str, Any], run_id: str,
        thread_id: str | None,
    ) -> bool:
        """Re-reserve a key whose run never started (its process died): compare-and-swap on
        the stale row's run id, so of two redeliveries racing for it only one wins."""
        n = await self.db.execute(
            "UPDATE trigger_events SET run_id = ?, thread_id = ?, created_at = ?"
            " WHERE tenant_id = ? AND trigger_name = ? AND idempotency_key = ? AND run_id = ?"
            " AND started = 0",
            (run_id, thread_id, utcnow(), tenant, trigger, key, stale["run_id"]),
        )
        return n > 0

    async def mark_started(self, tenant: str, trigger: str, key: str, thread_id: str) -> None:
        await self.db.execute(
            "UPDATE trigger_events SET started = 1, thread_id = ? WHERE tenant_id = ?"
            " AND trigger_name = ? AND idempotency_key = ?",
            (thread_id, tenant, trigger, key),
        )

    async def release(self, tenant: str, trigger: str, key: str, run_id: str) -> None:
        """Forget a reservation whose run could not be created, so a redelivery may retry."""
        await self.db.execute(
            "DELETE FROM trigger_events WHERE tenant_id = ? AND trigger_name = ?"
            " AND idempotency_key = ? AND run_id = ? AND started = 0",
            (tenant, trigger, key, run_id),
        )

    async def sweep(self, before: str) -> int:
        return await self.db.execute(
            "DELETE FROM trigger_events WHERE created_at < ? AND started = 1", (before,)
        )
