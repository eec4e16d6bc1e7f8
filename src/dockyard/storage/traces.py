"""Run traces (migration 0009): a header per run and its spans, written in batches.

The executor never awaits a write per node: ``statements`` turns a batch of spans into a few
multi-row upserts that the caller runs where it suits it — inside the transaction that records
the run's outcome (``RunQueue.finish(also=…)``), or from a once-a-second flush while a long run
executes. Spans are upserted: a node that is still running is written as ``running`` and
rewritten when it ends (or when the next step names it as the node it led to).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dockyard.storage.base import Storage, dumps, utcnow
from dockyard.storage.webhooks import Statement

SPAN_COLS = ("run_id", "attempt", "seq", "tenant_id", "parent_seq", "kind", "name", "namespace",
             "step", "status", "start_ms", "end_ms", "metadata", "detail")
# Columns of a listing: everything but the bulky ``detail``.
LIST_COLS = ", ".join(c for c in SPAN_COLS if c not in ("detail", "tenant_id", "run_id"))
_UPDATED = [c for c in SPAN_COLS if c not in ("run_id", "attempt", "seq", "tenant_id")]
# One statement carries at most this many rows (SQLite allows 32,766 parameters per statement).
BATCH_ROWS = 200


def span_statements(rows: Sequence[Sequence[Any]]) -> list[Statement]:
    """Multi-row upserts of span rows (tuples in ``SPAN_COLS`` order)."""
    out: list[Statement] = []
    one = "(" + ", ".join("?" for _ in SPAN_COLS) + ")"
    for i in range(0, len(rows), BATCH_ROWS):
        chunk = rows[i:i + BATCH_ROWS]
        out.append((
            f"INSERT INTO run_spans ({', '.join(SPAN_COLS)}) VALUES "
            + ", ".join(one for _ in chunk)
            + " ON CONFLICT (run_id, attempt, seq) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _UPDATED),
            [v for row in chunk for v in row],
        ))
    return out


def header_statement(
    run: dict[str, Any], *, base_checkpoint_id: str | None, span_count: int, dropped: int,
    totals: dict[str, Any],
) -> Statement:
    """Upsert the run's trace header; the base checkpoint of the first attempt is kept (a
    resumed attempt starts from the run's own checkpoint, not from where the run began)."""
    now = utcnow()
    return (
        "INSERT INTO run_traces (run_id, tenant_id, thread_id, attempt, base_checkpoint_id,"
        " span_count, dropped, metadata, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id) DO UPDATE SET attempt = excluded.attempt,"
        " base_checkpoint_id = CASE WHEN run_traces.attempt = excluded.attempt"
        " THEN excluded.base_checkpoint_id ELSE run_traces.base_checkpoint_id END,"
        " span_count = excluded.span_count, dropped = excluded.dropped,"
        " metadata = excluded.metadata, updated_at = excluded.updated_at",
        (run["run_id"], run["tenant_id"], run["thread_id"], run["attempts"], base_checkpoint_id,
         span_count, dropped, dumps(totals), now, now),
    )


class Traces:
    """Reads (always scoped by tenant) and retention of run traces."""

    def __init__(self, db: Storage) -> None:
        self.db = db

    async def write(self, statements: Sequence[Statement]) -> None:
        if not statements:
            return
        async with self.db.transaction() as tx:
            for sql, params in statements:
                await self.db._execute(tx, sql, params)

    async def header(self, tenant: str, run_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            "SELECT run_id, thread_id, attempt, base_checkpoint_id, span_count, dropped,"
            " metadata, created_at, updated_at FROM run_traces WHERE tenant_id = ? AND run_id = ?",
            (tenant, run_id))

    async def spans(
        self, tenant: str, run_id: str, *, limit: int, offset: int, kinds: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {LIST_COLS} FROM run_spans WHERE tenant_id = ? AND run_id = ?"
        params: list[Any] = [tenant, run_id]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})"
            params.extend(kinds)
        sql += " ORDER BY attempt, seq LIMIT ? OFFSET ?"
        return await self.db.fetchall(sql, [*params, limit, offset])

    async def span(self, tenant: str, run_id: str, attempt: int, seq: int) -> dict[str, Any] | None:
        return await self.db.fetchone(
            f"SELECT {LIST_COLS}, detail FROM run_spans WHERE tenant_id = ? AND run_id = ?"
            " AND attempt = ? AND seq = ?", (tenant, run_id, attempt, seq))

    async def sweep(self, before: str, *, batch: int = 500) -> int:
        """Delete the traces of runs traced before ``before`` (retention), tenant by tenant
        and at most ``batch`` runs per statement, so no sweep holds a long transaction."""
        tenants = await self.db.fetchall(
            "SELECT DISTINCT tenant_id FROM run_traces WHERE created_at < ?", (before,))
        deleted = 0
        for t in tenants:
            while True:
                rows = await self.db.fetchall(
                    "SELECT run_id FROM run_traces WHERE tenant_id = ? AND created_at < ?"
                    " LIMIT ?", (t["tenant_id"], before, batch))
                if not rows:
                    break
                ids = [r["run_id"] for r in rows]
                marks = ", ".join("?" for _ in ids)
                async with self.db.transaction() as tx:
                    await self.db._execute(
                        tx, f"DELETE FROM run_spans WHERE tenant_id = ? AND run_id IN ({marks})",
                        (t["tenant_id"], *ids))
                    await self.db._execute(
                        tx, f"DELETE FROM run_traces WHERE tenant_id = ? AND run_id IN ({marks})",
                        (t["tenant_id"], *ids))
                deleted += len(ids)
                if len(ids) < batch:
                    break
        return deleted


class QueueOverview:
    """What the queue page shows of one tenant: depth, running runs and their leases, the
    oldest waiting runs and the latest failures. Read-only; bounded by ``limit``."""

    def __init__(self, db: Storage) -> None:
        self.db = db

    async def overview(self, tenant: str, *, limit: int = 50) -> dict[str, Any]:
        cols = ("run_id, thread_id, assistant_id, graph_id, status, priority, attempts,"
                " worker_id, lease_until, available_at, started_at, ended_at, created_at,"
                " updated_at")
        running = await self.db.fetchall(
            f"SELECT {cols} FROM runs WHERE tenant_id = ? AND status = 'running'"
            " ORDER BY started_at LIMIT ?", (tenant, limit))
        # Counted after the running runs are listed (the reads are separate snapshots): a run
        # claimed in between is then counted as running, not listed as running but counted
        # as pending.
        depth = await self.db.fetchall(
            "SELECT status, priority, COUNT(*) AS n FROM runs WHERE tenant_id = ?"
            " AND status IN ('pending', 'running') GROUP BY status, priority"
            " ORDER BY status, priority DESC", (tenant,))
        pending = await self.db.fetchall(
            f"SELECT {cols} FROM runs WHERE tenant_id = ? AND status = 'pending'"
            " ORDER BY priority DESC, created_at LIMIT ?", (tenant, limit))
        failures = await self.db.fetchall(
            f"SELECT {cols}, error FROM runs WHERE tenant_id = ? AND status = 'error'"
            " ORDER BY updated_at DESC LIMIT ?", (tenant, limit))
        return {"depth": depth, "running": running, "pending": pending, "failures": failures}
