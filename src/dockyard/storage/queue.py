"""The run queue: runs are rows; workers claim them, hold a lease, and record the outcome.

A thread runs one run at a time: a pending run is claimable only when no other run of its
thread is running, and runs of one thread are taken oldest first (``enqueue`` semantics).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dockyard.storage.base import Storage, decode_row, dumps, utcnow

RUN_COLS = (
    "run_id, thread_id, assistant_id, assistant_version, graph_id, status, metadata, kwargs,"
    " multitask_strategy, temporary, priority, attempts, available_at, worker_id, lease_until,"
    " started_at, ended_at, error, created_at, updated_at, tenant_id, revision_id"
)

ACTIVE = ("pending", "running")

# The tenants with pending runs, in order. A loose index scan (one index probe per tenant)
# rather than DISTINCT, which reads and sorts every pending run on each claim.
_TENANTS_CTE = (
    "WITH RECURSIVE t (tenant_id) AS ("
    " SELECT * FROM (SELECT tenant_id FROM runs WHERE status = 'pending'"
    " ORDER BY tenant_id LIMIT 1) AS first_tenant"
    " UNION ALL SELECT (SELECT n.tenant_id FROM runs n WHERE n.status = 'pending'"
    " AND n.tenant_id > t.tenant_id ORDER BY n.tenant_id LIMIT 1) FROM t"
    " WHERE t.tenant_id IS NOT NULL"
    ")"
)
PENDING_TENANTS = _TENANTS_CTE + " SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL"


def _candidates(cols: str, tenant: str, revision_cond: str, limit: int, lock: str) -> str:
    """A tenant's claimable runs in claim order: pending and due, on a thread with no running
    run and no older pending one. ``tenant`` is the SQL the tenant id is compared with."""
    return (
        f"SELECT {cols} FROM runs r WHERE r.status = 'pending'"
        f" AND r.tenant_id = {tenant} AND r.available_at <= ?" + revision_cond +
        " AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = r.thread_id"
        " AND o.status = 'running')"
        " AND NOT EXISTS (SELECT 1 FROM runs e WHERE e.thread_id = r.thread_id"
        " AND e.status = 'pending' AND e.created_at < r.created_at)"
        f" ORDER BY r.priority DESC, r.created_at LIMIT {limit}" + lock
    )


def _revision_filter(revision: str | None) -> tuple[str, tuple[str, ...]]:
    """The claim's condition on a candidate's revision (None: the base's runs), and its
    parameters."""
    if revision is None:
        return " AND r.revision_id IS NULL", ()
    return " AND r.revision_id = ?", (revision,)


# A claimed run's key (PostgreSQL's claim only): whether its thread had a root checkpoint at the
# claim. False lets the executor skip reading the thread's latest checkpoint (there is none).
RUN_THREAD_CHECKPOINTED = "_thread_checkpointed"


def public_run(row: dict[str, Any]) -> dict[str, Any]:
    """A run row in the Agent Server's ``Run`` shape (the API's and the webhooks' view)."""
    return {
        "run_id": row["run_id"],
        "thread_id": row["thread_id"],
        "assistant_id": row["assistant_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "status": row["status"],
        "metadata": row["metadata"],
        "kwargs": dict(row["kwargs"]),
        "multitask_strategy": row["multitask_strategy"],
        "assistant_version": row["assistant_version"],
        "attempts": row["attempts"],
        "error": row.get("error"),
    }


def first_claim(run: dict[str, Any]) -> bool:
    """Whether the claim that returned ``run`` was its first: nothing of it ran before.

    The claim sets ``started_at`` only when still NULL and ``updated_at`` always, both to its
    own clock reading, so they are equal exactly on the first claim. A run claimed again
    (lease expiry, release at shutdown, a transient error) keeps its first ``started_at``.
    """
    return bool(run.get("started_at")) and run.get("started_at") == run.get("updated_at")


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


class RunQueue:
    def __init__(self, db: Storage) -> None:
        self.db = db
        self._last_tenant = ""
        # Whether the last claim saw any pending run (due or not): when none is, the pool's
        # idle wait needs no query for the next due time.
        self.saw_pending = True

    async def insert(self, tenant: str, run: dict[str, Any], *, tx: Any = None) -> dict[str, Any]:
        row, statement = self.insert_statement(tenant, run)
        await self.db.execute_in(tx, *statement)
        return row

    def insert_statement(
        self, tenant: str, run: dict[str, Any], *, when: str | None = None,
    ) -> tuple[dict[str, Any], tuple[str, Sequence[Any]]]:
        """``insert`` as the row it writes and the statement, for a caller that commits it
        with others.

        ``when``: a CTE of the caller's statement (PostgreSQL): the row is inserted once per
        row of it, so not at all when it is empty."""
        now = utcnow()
        row = {
            "status": "pending", "attempts": 0, "priority": 0, "temporary": 0,
            "available_at": now, "worker_id": None, "lease_until": None, "started_at": None,
            "ended_at": None, "error": None, "created_at": now, "updated_at": now,
            "tenant_id": tenant, "revision_id": None, **run,
        }
        # A SELECT list does not take its parameters' types from the columns, as VALUES does:
        # the JSON ones are cast.
        values = " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" if when is None \
            else f" SELECT ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?::jsonb, ?, ?, ?, ?, ?, ?, ?, ? FROM {when}"
        return row, (
            "INSERT INTO runs (run_id, tenant_id, thread_id, assistant_id, assistant_version,"
            " graph_id, status, metadata, kwargs, multitask_strategy, temporary, priority,"
            " attempts, available_at, created_at, updated_at, revision_id)" + values,
            (
                row["run_id"], tenant, row["thread_id"], row["assistant_id"],
                row["assistant_version"], row["graph_id"], row["status"], dumps(row["metadata"]),
                dumps(row["kwargs"]), row["multitask_strategy"], int(row["temporary"]),
                row["priority"], 0, row["available_at"], now, now, row["revision_id"],
            ),
        )

    async def get(self, tenant: str, run_id: str, thread_id: str | None = None) -> dict[str, Any] | None:
        sql = f"SELECT {RUN_COLS} FROM runs WHERE tenant_id = ? AND run_id = ?"
        params: list[Any] = [tenant, run_id]
        if thread_id is not None:
            sql += " AND thread_id = ?"
            params.append(thread_id)
        return await self.db.fetchone(sql, params)

    async def list_for_thread(
        self, tenant: str, thread_id: str, *, status: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        sql = f"SELECT {RUN_COLS} FROM runs WHERE tenant_id = ? AND thread_id = ?"
        params: list[Any] = [tenant, thread_id]
        if status:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY created_at DESC LIMIT ? OFFSET ?"
        return await self.db.fetchall(sql, [*params, limit, offset])

    async def active_for_thread(self, tenant: str, thread_id: str) -> list[dict[str, Any]]:
        return await self.db.fetchall(*self.active_for_thread_statement(tenant, thread_id))

    @staticmethod
    def active_for_thread_statement(tenant: str, thread_id: str) -> tuple[str, tuple[Any, ...]]:
        """``active_for_thread``'s read, for ``Storage.fetch_batch``."""
        return (f"SELECT {RUN_COLS} FROM runs WHERE tenant_id = ? AND thread_id = ?"
                " AND status IN ('pending', 'running') ORDER BY created_at", (tenant, thread_id))

    async def active(self, tenant: str, status: str | None = None) -> list[dict[str, Any]]:
        statuses = (status,) if status else ACTIVE
        return await self.db.fetchall(
            f"SELECT {RUN_COLS} FROM runs WHERE tenant_id = ?"
            f" AND status IN ({', '.join('?' for _ in statuses)})",
            (tenant, *statuses),
        )

    async def claim(
        self, worker_id: str, lease_seconds: float, *, tenant_limit: int = 0,
        assistant_limit: int = 0, revision: str | None = None,
    ) -> dict[str, Any] | None:
        """Take the next claimable run, sharing fairly between tenants.

        ``revision`` None takes runs of the server's own project (the base), otherwise runs
        pinned to that revision: each revision's code runs in worker processes of its own.

        Tenants with pending runs are served round-robin (a burst of one tenant cannot starve
        another); within a tenant, highest priority first, then oldest. A thread runs one run
        at a time, oldest first. ``tenant_limit`` / ``assistant_limit`` cap running runs
        (0 = no cap).
        """
        if self.db.writable_ctes and not tenant_limit and not assistant_limit:
            runs = await self._claim_in_one_statement(worker_id, lease_seconds, revision, 1)
            return runs[0] if runs else None
        now = utcnow()
        revision_cond, revision_params = _revision_filter(revision)
        # Read outside any transaction (it locks nothing): an idle worker's claim is one
        # round trip, and ``saw_pending`` tells the pool that no run is even delayed.
        tenants = [r["tenant_id"] for r in await self.db.fetchall(PENDING_TENANTS)]
        self.saw_pending = bool(tenants)
        # Round-robin: start after the tenant this queue served last.
        tenants = [t for t in tenants if t > self._last_tenant] + [
            t for t in tenants if t <= self._last_tenant
        ]
        candidates = _candidates("r.run_id, r.assistant_id", "?", revision_cond, 16,
                                 self.db.claim_lock)
        if not tenants:
            return None
        async with self.db.transaction() as tx:
            for tenant in tenants:
                # Caps are check-then-act: other processes claiming for the same tenant (or
                # assistant) wait on a lock until this transaction ends, so they count this run.
                if tenant_limit:
                    await self.db.lock_key(tx, f"cap:tenant:{tenant}")
                    if await self._running(tx, "tenant_id", tenant) >= tenant_limit:
                        continue
                rows = await self.db._fetch(
                    tx, candidates, (tenant, now, *revision_params),
                )
                for row in rows:
                    if assistant_limit:
                        await self.db.lock_key(tx, f"cap:assistant:{row['assistant_id']}")
                        if await self._running(
                            tx, "assistant_id", row["assistant_id"]
                        ) >= assistant_limit:
                            continue
                    self._last_tenant = tenant
                    return await self._take(tx, row["run_id"], worker_id, lease_seconds, now)
        return None

    async def claim_many(
        self, worker_id: str, lease_seconds: float, limit: int, *, tenant_limit: int = 0,
        assistant_limit: int = 0, revision: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` claimable runs, as ``claim`` takes one: a worker with a backlog
        before it fills its free run slots in one statement instead of one per run.

        Without caps, on a dialect with writable CTEs, tenants are visited in the same order
        and a tenant gives up to ``limit`` runs before the next is visited (round-robin with
        a quantum of ``limit``; the next claim starts after the last tenant served). With
        caps, or on SQLite, runs are claimed one at a time (``claim``)."""
        if limit > 1 and self.db.writable_ctes and not tenant_limit and not assistant_limit:
            return await self._claim_in_one_statement(worker_id, lease_seconds, revision, limit)
        runs: list[dict[str, Any]] = []
        while len(runs) < limit:
            run = await self.claim(worker_id, lease_seconds, tenant_limit=tenant_limit,
                                   assistant_limit=assistant_limit, revision=revision)
            if run is None:
                break
            runs.append(run)
            if not self.saw_pending:
                break
        return runs

    async def _claim_in_one_statement(
        self, worker_id: str, lease_seconds: float, revision: str | None, limit: int,
    ) -> list[dict[str, Any]]:
        """``claim_many`` without caps, on a dialect with writable CTEs: list the tenants with
        pending runs, pick up to ``limit`` claimable runs from the tenants after the one
        served last, take them and mark their threads busy, in one statement (its own
        transaction; the candidates' row locks are held until the update commits). The
        statement also tells whether other runs are pending (``saw_pending``), so an idle
        worker's claim is one round trip too, and a worker that took the only pending runs
        does not claim again.

        The tenants are visited in order (the nested loop of the LATERAL join stops once it
        has ``limit`` runs), and only the runs it returns are locked (``FOR UPDATE SKIP
        LOCKED``, pulled one at a time). A thread gives one run at most: its oldest pending
        run, and none while one of its runs is running. ``limit`` is written into the
        statement (an int): one prepared statement per batch size, planned for its limit."""
        now = utcnow()
        revision_cond, revision_params = _revision_filter(revision)
        rows = await self.db.fetchall(
            _TENANTS_CTE + ","
            " c AS (SELECT x.claim_id FROM (SELECT tenant_id FROM t WHERE tenant_id IS NOT NULL"
            " ORDER BY tenant_id <= ?, tenant_id) AS p CROSS JOIN LATERAL ("
            + _candidates("r.run_id AS claim_id", "p.tenant_id", revision_cond, limit,
                          self.db.claim_lock) +
            f") AS x LIMIT {limit}),"
            " u AS (UPDATE runs SET status = 'running', worker_id = ?, lease_until = ?,"
            " attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ?"
            f" FROM c WHERE runs.run_id = c.claim_id RETURNING {RUN_COLS}),"
            " th AS (UPDATE threads SET status = 'busy', updated_at = ? FROM u"
            " WHERE threads.tenant_id = u.tenant_id AND threads.thread_id = u.thread_id)"
            " SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM runs WHERE status = 'pending'"
            f" LIMIT {limit + 1}) AS p2) AS pending, EXISTS (SELECT 1 FROM checkpoints ck"
            " WHERE ck.thread_id = u.thread_id COLLATE \"default\" AND ck.checkpoint_ns = '')"
            " AS checkpointed,"
            " u.* FROM (SELECT 1 AS one) AS one LEFT JOIN u ON TRUE",
            (self._last_tenant, now, *revision_params, worker_id, in_seconds(lease_seconds),
             now, now, now),
        )
        # Pending runs as the statement saw them, the ones it claims included (its snapshot
        # precedes its own update): any other one means the pool should claim again at once.
        pending = int(rows[0]["pending"])
        runs: list[dict[str, Any]] = []
        for row in rows:
            del row["pending"]
            # Whether the run's thread had a root checkpoint when the run was claimed: while
            # the run holds the thread (busy), only the run itself adds one.
            checkpointed = bool(row.pop("checkpointed"))
            if row.get("run_id") is not None:
                row[RUN_THREAD_CHECKPOINTED] = checkpointed
                runs.append(row)
        self.saw_pending = pending > len(runs)
        if len(runs) > 1:
            # In claim order (an UPDATE returns its rows in no particular order): tenants as
            # the statement visited them, then priority, then age.
            last = self._last_tenant
            runs.sort(key=lambda r: (r["tenant_id"] <= last, r["tenant_id"], -r["priority"],
                                     r["created_at"]))
        if runs:
            self._last_tenant = runs[-1]["tenant_id"]  # the tenant served last
        return runs

    async def _running(self, tx: Any, column: str, value: str) -> int:
        rows = await self.db._fetch(
            tx, f"SELECT COUNT(*) AS n FROM runs WHERE {column} = ? AND status = 'running'", (value,)
        )
        return int(rows[0]["n"])

    async def _take(
        self, tx: Any, run_id: str, worker_id: str, lease_seconds: float, now: str
    ) -> dict[str, Any] | None:
        await self.db._execute(
            tx,
            "UPDATE runs SET status = 'running', worker_id = ?, lease_until = ?,"
            " attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ?"
            " WHERE run_id = ?",
            (worker_id, in_seconds(lease_seconds), now, now, run_id),
        )
        claimed = await self.db._fetch(tx, f"SELECT {RUN_COLS} FROM runs WHERE run_id = ?", (run_id,))
        row = decode_row(claimed[0])
        if row is None:
            return None
        # The thread is busy while its run runs (set here, in the claim's transaction, rather
        # than in a transaction of its own when the executor starts).
        await self.db._execute(
            tx, "UPDATE threads SET status = 'busy', updated_at = ? WHERE tenant_id = ?"
            " AND thread_id = ?", (now, row["tenant_id"], row["thread_id"]),
        )
        return row

    async def count_pending(self) -> int:
        row = await self.db.fetchone("SELECT COUNT(*) AS n FROM runs WHERE status = 'pending'")
        return int(row["n"]) if row else 0

    async def next_available_at(self, revision: str | None = None) -> str | None:
        """When the next pending run of the base (None) or of ``revision`` becomes due."""
        cond = "revision_id IS NULL" if revision is None else "revision_id = ?"
        row = await self.db.fetchone(
            f"SELECT MIN(available_at) AS t FROM runs WHERE status = 'pending' AND {cond}",
            () if revision is None else (revision,),
        )
        return row["t"] if row else None

    async def finish(
        self, run_id: str, status: str, error: dict[str, Any] | None = None, *,
        also: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> None:
        """Record the run's outcome; ``also`` are statements committed atomically with it
        (the thread's final state, the run's webhook delivery and trace rows)."""
        now = utcnow()
        sql = (
            "UPDATE runs SET status = ?, error = ?, ended_at = ?, updated_at = ?,"
            " worker_id = NULL, lease_until = NULL WHERE run_id = ?"
        )
        params = (status, dumps(error) if error is not None else None, now, now, run_id)
        if not also:
            await self.db.execute(sql, params)
            return
        await self.db.execute_together([(sql, params), *also])

    async def set_status(
        self, tenant: str, run_ids: list[str], status: str, *, only_from: tuple[str, ...] = ACTIVE
    ) -> int:
        if not run_ids:
            return 0
        now = utcnow()
        return await self.db.execute(
            f"UPDATE runs SET status = ?, ended_at = ?, updated_at = ? WHERE tenant_id = ?"
            f" AND run_id IN ({', '.join('?' for _ in run_ids)})"
            f" AND status IN ({', '.join('?' for _ in only_from)})",
            (status, now, now, tenant, *run_ids, *only_from),
        )

    async def delete(self, tenant: str, run_id: str) -> int:
        """Delete a run and its trace (a deleted or rolled-back run leaves nothing behind)."""
        async with self.db.transaction() as tx:
            await self.db._execute(tx, "DELETE FROM run_spans WHERE tenant_id = ? AND run_id = ?",
                                   (tenant, run_id))
            await self.db._execute(tx, "DELETE FROM run_traces WHERE tenant_id = ? AND run_id = ?",
                                   (tenant, run_id))
            return await self.db._execute(
                tx, "DELETE FROM runs WHERE tenant_id = ? AND run_id = ?", (tenant, run_id))

    async def requeue_orphans(self, *, all_running: bool) -> list[str]:
        """Return runs whose worker is gone to the queue (embedded start-up: all running ones)."""
        now = utcnow()
        cond = "status = 'running'" + ("" if all_running else " AND lease_until < ?")
        params: list[Any] = [] if all_running else [now]
        rows = await self.db.fetchall(f"SELECT run_id FROM runs WHERE {cond}", params)
        if rows:
            await self.db.execute(
                f"UPDATE runs SET status = 'pending', worker_id = NULL, lease_until = NULL,"
                f" updated_at = ? WHERE {cond}",
                [now, *params],
            )
        return [r["run_id"] for r in rows]

    async def renew(self, run_ids: list[str], lease_seconds: float) -> None:
        if run_ids:
            await self.db.execute(
                f"UPDATE runs SET lease_until = ? WHERE status = 'running'"
                f" AND run_id IN ({', '.join('?' for _ in run_ids)})",
                (in_seconds(lease_seconds), *run_ids),
            )

    async def recover_expired(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """Runs whose lease expired (their worker died): re-queue, or fail after max_attempts.

        ``attempts`` counts claims; a run claimed ``max_attempts`` times whose worker died each
        time is marked ``error`` with the reason instead of crashing workers forever.
        """
        now = utcnow()
        async with self.db.transaction() as tx:
            rows = await self.db._fetch(
                tx,
                "SELECT run_id, attempts FROM runs WHERE status = 'running' AND lease_until < ?"
                + self.db.claim_lock,
                (now,),
            )
            requeued = [r["run_id"] for r in rows if r["attempts"] < max_attempts]
            failed = [r["run_id"] for r in rows if r["attempts"] >= max_attempts]
            for run_id in requeued:
                await self.db._execute(
                    tx,
                    "UPDATE runs SET status = 'pending', worker_id = NULL, lease_until = NULL,"
                    " updated_at = ? WHERE run_id = ?",
                    (now, run_id),
                )
            for run_id in failed:
                await self.db._execute(
                    tx,
                    "UPDATE runs SET status = 'error', error = ?, ended_at = ?, updated_at = ?,"
                    " worker_id = NULL, lease_until = NULL WHERE run_id = ?",
                    (dumps({"error": "WorkerLost", "message": (
                        f"the worker executing this run stopped {max_attempts} times "
                        "(lease expired without a heartbeat); giving up")}), now, now, run_id),
                )
        return requeued, failed

    async def release(self, worker_id: str, run_ids: list[str]) -> int:
        """Hand runs back to the queue at graceful shutdown (does not count as an attempt)."""
        if not run_ids:
            return 0
        return await self.db.execute(
            "UPDATE runs SET status = 'pending', worker_id = NULL, lease_until = NULL,"
            " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = ?"
            f" WHERE status = 'running' AND worker_id = ? AND run_id IN ({', '.join('?' for _ in run_ids)})",
            (utcnow(), worker_id, *run_ids),
        )

    async def depth_by(self, statuses: tuple[str, ...] = ACTIVE) -> list[dict[str, Any]]:
        """Run counts by tenant, status and priority (``/metrics``; all tenants, all processes)."""
        return await self.db.fetchall(
            "SELECT tenant_id, status, priority, COUNT(*) AS n FROM runs"
            f" WHERE status IN ({', '.join('?' for _ in statuses)})"
            " GROUP BY tenant_id, status, priority",
            statuses,
        )
