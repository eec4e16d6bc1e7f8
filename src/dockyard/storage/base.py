"""The storage interface: one class of shared logic, dialects supply a short list of hooks.

Dialect hooks (``SqliteStorage`` in sqlite.py, ``PostgresStorage`` in postgres.py):

* ``open`` / ``close``                engine setup and teardown
* ``_execute`` / ``_fetch``           run one statement (``?`` placeholders; dialects translate)
* ``transaction`` / ``statement``     a unit of work (SQLite: the shared connection lock;
                                      PostgreSQL: a pooled connection in a transaction)
* ``_json_field`` / ``_json_param``   JSON value at a path, compared for metadata filters
* ``_adapt_ddl`` / ``migrate``        portable migration DDL in the dialect's types; PostgreSQL
                                      holds an advisory lock around ``migrate``
* ``row_lock`` / ``claim_lock``       row locking (SQLite: one writer, nothing to add;
                                      PostgreSQL: ``FOR UPDATE`` / ``FOR UPDATE SKIP LOCKED``)
* ``lock_key``                        serialise transactions on a name (SQLite: its one writer
                                      already does; PostgreSQL: a transaction advisory lock)
* ``checkpointer``                    the LangGraph checkpoint saver bound to the same database
* ``delete_checkpoints`` / ``copy_checkpoints``   SQL over the saver's tables
* error translation                   driver errors become ``StorageError`` (``Conflict`` for
                                      a unique violation)

Everything else (resource CRUD, filters, the run queue) is shared SQL written once here.
Rows come back as plain dicts with JSON columns decoded. Both dialects store the same schema
(timestamps as ISO-8601 text, booleans as 0/1 integers), so rows read back alike.
"""

from __future__ import annotations

import abc
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson
from langgraph.checkpoint.base import BaseCheckpointSaver

from dockyard.errors import InvalidInput

JSON_COLUMNS = {
    "config",
    "context",
    "metadata",
    "values",
    "interrupts",
    "kwargs",
    "error",
    "payload",
    "value",
    "detail",
    "graphs",
    "current_graphs",  # deployments.routing: the current and canary revisions' graphs
    "canary_graphs",
    "auto_rollback",
}

SORTABLE = {
    "threads": {"thread_id", "status", "created_at", "updated_at"},
    "assistants": {"assistant_id", "graph_id", "name", "created_at", "updated_at"},
}

# The reference server sorts threads by the time their state last changed; Dockyard updates
# ``updated_at`` whenever a run or a state update writes the thread's values.
SORT_ALIASES = {"state_updated_at": "updated_at"}

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


def utcnow() -> str:
    """ISO-8601 UTC timestamps sort lexically, so SQLite and PostgreSQL compare them alike."""
    return datetime.now(UTC).isoformat()


def dumps(value: Any) -> str:
    from dockyard.serde import json_dumps

    return json_dumps(value).decode()


def decode_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``decode_row`` of each row."""
    return [r for r in (decode_row(x) for x in rows) if r is not None]


def decode_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """Decode the JSON columns of a row; both dialects hand them over as JSON text."""
    if row is None:
        return None
    for col in JSON_COLUMNS.intersection(row):
        raw = row[col]
        if isinstance(raw, str | bytes):
            row[col] = orjson.loads(raw)
    return row


class Storage(abc.ABC):
    """Shared persistence logic for assistants, threads, runs, crons and store items."""

    dialect: str = "abstract"
    checkpointer: BaseCheckpointSaver[Any]
    # Appended to a SELECT inside ``transaction()`` whose rows the transaction then updates.
    row_lock: str = ""
    # Appended to the run queue's claim: concurrent claimers skip each other's rows.
    claim_lock: str = ""
    # Data-modifying statements inside WITH (PostgreSQL): the queue claims a run in one
    # statement instead of a transaction of five round trips. SQLite has no such CTEs.
    writable_ctes: bool = False

    # ---- dialect hooks -------------------------------------------------------------------
    async def lock_key(self, tx: Any, key: str) -> None:  # noqa: B027 - optional hook
        """Hold a lock named ``key`` until ``tx`` ends, so check-then-act on shared counts
        (the queue's concurrency caps) is not raced by another process. SQLite's single
        writer (BEGIN IMMEDIATE) already serialises the transactions: nothing to do."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def transaction(self) -> Any:
        """Async context manager yielding a handle accepted by ``execute``/``fetch*``."""

    @abc.abstractmethod
    async def _execute(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return the affected row count."""

    @abc.abstractmethod
    async def _fetch(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        ...

    @abc.abstractmethod
    def _json_field(self, column: str, path: Sequence[str]) -> str:
        """SQL for the JSON value at ``column[path[0]][path[1]]…``, compared with ``=`` to
        ``_json_param()``.

        Both dialects must agree: ``1``, ``"1"`` and ``true`` differ; a missing key matches
        nothing, a JSON ``null`` matches ``null``; arrays match in order. (SQLite compares
        canonical JSON text, PostgreSQL JSONB values; they differ only on ``1`` vs ``1.0`` and
        on the key order of objects nested in arrays, which JSONB ignores.)
        """

    def _json_param(self) -> str:
        """SQL placeholder that canonicalises a JSON-encoded parameter."""
        return "?"

    @abc.abstractmethod
    async def delete_checkpoints(
        self, thread_id: str, *, run_id: str | None = None, keep_latest: bool = False
    ) -> None:
        """Delete a thread's checkpoints (all, only a run's, or all but the latest)."""

    #: SQL for the ``run_id`` in a checkpoint row's metadata (each saver stores it its own way).
    checkpoint_run_id_sql = "NULL"

    def checkpoint_filter(
        self, thread_id: str, *, run_id: str | None, keep_latest: bool
    ) -> tuple[str, list[Any]]:
        """WHERE clause over the checkpoints table: a thread's checkpoints, optionally only
        those a run wrote, or all but the latest root checkpoint."""
        where = "thread_id = ?"
        params: list[Any] = [thread_id]
        if run_id is not None:
            where += f" AND {self.checkpoint_run_id_sql} = ?"
            params.append(run_id)
        if keep_latest:
            where += (
                " AND checkpoint_id NOT IN (SELECT MAX(checkpoint_id) FROM checkpoints"
                " WHERE thread_id = ? AND checkpoint_ns = '')"
            )
            params.append(thread_id)
        return where, params

    #: The checkpointer's tables keyed by ``thread_id``, with their other columns: what
    #: ``copy_checkpoints`` duplicates under a new thread id.
    checkpoint_tables: tuple[tuple[str, str], ...] = ()

    async def copy_checkpoints(self, src_thread: str, dst_thread: str) -> None:
        """Duplicate a thread's checkpoints (and their writes/blobs) under ``dst_thread``."""
        async with self.transaction() as tx:
            for table, columns in self.checkpoint_tables:
                await self._execute(
                    tx,
                    f"INSERT INTO {table} (thread_id, {columns})"
                    f" SELECT ?, {columns} FROM {table} WHERE thread_id = ?",
                    (dst_thread, src_thread),
                )

    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` (or what caused it) is the database being briefly unreachable.

        A run that hits such an error is handed back to the queue and resumed from its last
        checkpoint once the database answers again, instead of failing.
        """
        seen = 0
        cur: BaseException | None = exc
        while cur is not None and seen < 8:
            if self._transient_driver_error(cur):
                return True
            cur = cur.__cause__ or cur.__context__
            seen += 1
        return False

    def _transient_driver_error(self, exc: BaseException) -> bool:
        return False

    async def notify_runs(self, kind: str = "") -> None:  # noqa: B027 - optional hook
        """Wake workers in other processes: runs are waiting (PostgreSQL: NOTIFY).

        ``kind`` is passed to the listeners: ``"base"`` says only runs of the base project
        were queued (no scheduler or revision supervisor needs to look); ``""`` wakes all.
        Embedded SQLite has one process, whose pool is woken directly; nothing to do.
        """

    def notify_statement(self, kind: str = "") -> tuple[str, Sequence[Any]] | None:
        """``notify_runs`` as a statement to commit with the rows it announces: sent when their
        transaction commits, so the wake-up costs no commit of its own and never precedes the
        rows (None: nothing to send)."""
        return None

    async def listen_runs(self, callback: Callable[[str], None]) -> None:  # noqa: B027
        """Call ``callback(kind)`` whenever another process calls ``notify_runs`` (PG: LISTEN);
        ``""`` after a lost connection is re-established (notifications may have been lost)."""

    # ---- migrations ----------------------------------------------------------------------
    async def migrate(self) -> list[str]:
        """Apply pending migrations in order; idempotent. Returns the versions applied."""
        applied: list[str] = []
        async with self.transaction() as tx:
            await self._execute(
                tx,
                self._adapt_ddl(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
                ),
            )
            done = {r["version"] for r in await self._fetch(tx, "SELECT version FROM schema_migrations")}
            files = sorted(
                (p for p in resources.files("dockyard.storage.migrations").iterdir()
                 if p.name.endswith(".sql")),
                key=lambda p: p.name,
            )
            for f in files:
                version = f.name.split("_", 1)[0]
                if version in done:
                    continue
                for stmt in self._split_sql(f.read_text()):
                    await self._execute(tx, self._adapt_ddl(stmt))
                await self._execute(
                    tx,
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, utcnow()),
                )
                applied.append(version)
        return applied

    @staticmethod
    def _split_sql(text: str) -> list[str]:
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]

    def _adapt_ddl(self, stmt: str) -> str:
        return stmt

    # ---- helpers -------------------------------------------------------------------------
    def statement(self) -> Any:
        """Context for one statement, atomic on its own (no explicit BEGIN/COMMIT).

        Dialects may override it with something cheaper than ``transaction()``; a single
        statement never needs a multi-statement transaction.
        """
        return self.transaction()

    def snapshot(self) -> Any:
        """Context for reads that must agree with each other (one snapshot of the database).

        SQLite's transaction already is one; PostgreSQL's default isolation gives each
        statement a snapshot of its own, so its dialect overrides this."""
        return self.transaction()

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        async with self.statement() as tx:
            rows = await self._fetch(tx, sql, params)
        return decode_row(rows[0]) if rows else None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self.statement() as tx:
            rows = await self._fetch(tx, sql, params)
        return decode_rows(rows)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.statement() as tx:
            return await self._execute(tx, sql, params)

    async def fetch_batch(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[dict[str, Any]]]:
        """Run reads together: the rows of each statement, in order. PostgreSQL sends them in
        one round trip (a pipeline); each statement reads its own snapshot, as it would alone
        at READ COMMITTED."""
        out: list[list[dict[str, Any]]] = []
        async with self.statement() as tx:
            for sql, params in statements:
                rows = await self._fetch(tx, sql, params)
                out.append(decode_rows(rows))
        return out

    async def execute_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run writes whose results nobody reads in one transaction. PostgreSQL sends them as
        one multi-statement query (one round trip instead of one per statement and
        BEGIN/COMMIT)."""
        async with self.transaction() as tx:
            for sql, params in statements:
                await self._execute(tx, sql, params)

    async def execute_together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """``execute_batch`` for writes that touch disjoint rows: PostgreSQL runs them as one
        statement (all but the last as writable CTEs), bound on the server and so prepared
        once per connection. Each sees the database as it was before any of them, so none may
        depend on another's effect. Every statement but the last must be an INSERT, UPDATE or
        DELETE (a CTE that is not runs only if read), optionally after a ``WITH`` clause of its
        own, whose CTEs join the statement's (their names must differ, and not be ``s<n>``);
        otherwise they go as ``execute_batch``."""
        await self.execute_batch(statements)

    async def execute_in(self, tx: Any | None, sql: str, params: Sequence[Any] = ()) -> int:
        """``execute`` inside the transaction ``tx``, or as a statement of its own if None.

        Lets one repository method serve both a lone write and a larger unit of work (a run
        and the thread it needs, created together; a cron's tick and the run it fires).
        """
        if tx is None:
            return await self.execute(sql, params)
        return await self._execute(tx, sql, params)

    async def fetchone_in(
        self, tx: Any | None, sql: str, params: Sequence[Any] = ()
    ) -> dict[str, Any] | None:
        if tx is None:
            return await self.fetchone(sql, params)
        rows = await self._fetch(tx, sql, params)
        return decode_row(rows[0]) if rows else None

    async def fetchall_in(
        self, tx: Any | None, sql: str, params: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        if tx is None:
            return await self.fetchall(sql, params)
        rows = await self._fetch(tx, sql, params)
        return decode_rows(rows)

    async def ping(self) -> None:
        """Health check (``/ok?check_db=1``): one round trip; raises if the database is down."""
        await self.fetchone("SELECT 1 AS ok")

    def json_filter(
        self, column: str, filt: dict[str, Any] | None, clauses: list[str], params: list[Any]
    ) -> None:
        """Append conditions matching rows whose JSON ``column`` contains ``filt``.

        Nested objects match by containment, as in the reference server (JSONB ``@>``):
        ``{"a": {"b": 1}}`` matches ``{"a": {"b": 1, "c": 2}}``. Other values match exactly.
        """
        self._json_filter(column, filt or {}, (), clauses, params)

    def auth_filter(
        self, column: str, filt: dict[str, Any] | None, clauses: list[str], params: list[Any]
    ) -> None:
        """Append a custom auth handler's filter (``services/custom_auth.py``) on top-level
        keys of ``column``: a bare value or ``{"$eq": v}`` is equality, ``{"$contains": v}``
        (or a list of values, all required) membership in a JSON array. Keys are ANDed."""
        for key, cond in (filt or {}).items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise InvalidInput(f"Invalid auth filter key {key!r}")
            ops = (cond if isinstance(cond, dict) and cond
                   and all(k in ("$eq", "$contains") for k in cond) else {"$eq": cond})
            for op, want in ops.items():
                if op == "$eq":
                    clauses.append(f"{self._json_field(column, (key,))} = {self._json_param()}")
                    params.append(dumps(want))
                    continue
                for item in want if isinstance(want, list) else [want]:
                    sql, param = self._json_contains(column, key, item)
                    clauses.append(sql)
                    params.append(param)

    def byte_length(self, column: str) -> str:
        """SQL for the size in bytes of a JSON column's text (quota accounting)."""
        return f"length(CAST({column} AS BLOB))"

    def _json_contains(self, column: str, key: str, item: Any) -> tuple[str, Any]:
        """SQL (one ``?``) true when ``column[key]`` is an array holding ``item``."""
        raise NotImplementedError

    def _json_filter(
        self, column: str, filt: dict[str, Any], path: tuple[str, ...], clauses: list[str],
        params: list[Any],
    ) -> None:
        for key, value in filt.items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise InvalidInput(f"Invalid filter key {key!r} for {column}")
            if isinstance(value, dict) and value:
                self._json_filter(column, value, (*path, key), clauses, params)
                continue
            clauses.append(f"{self._json_field(column, (*path, key))} = {self._json_param()}")
            params.append(dumps(value))

    @staticmethod
    def order_by(table: str, sort_by: str | None, sort_order: str | None, default: str) -> str:
        col = SORT_ALIASES.get(sort_by or default, sort_by or default)
        if col not in SORTABLE[table]:
            raise InvalidInput(f"Cannot sort {table} by {col!r}; use one of {sorted(SORTABLE[table])}")
        order = (sort_order or "desc").lower()
        if order not in ("asc", "desc"):
            raise InvalidInput("sort_order must be 'asc' or 'desc'")
        return f"ORDER BY {col} {order.upper()}"

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        async with self.transaction() as tx:
            yield tx
