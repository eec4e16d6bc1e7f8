"""SQLite dialect: the embedded default (a WAL file under ``.dockyard/``).

One ``sqlite3`` connection, used directly on the event loop, is shared by Dockyard's tables and
the checkpointer (``LoopSqliteSaver``). Statements on a local WAL file take microseconds, so
running them on the loop is cheaper than a thread hop per statement, and one connection in one
process means no writer contention (no SQLITE_BUSY retries). An asyncio lock keeps a
multi-statement transaction whole should its body ever await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, DockyardError, StorageError
from dockyard.storage.base import Storage, dumps
from dockyard.storage.sqlite_saver import LoopSqliteSaver

log = logging.getLogger("dockyard.storage")


_UNIQUE = ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _translate(exc: sqlite3.Error) -> DockyardError:
    """Driver errors stop at the storage boundary (as in the PostgreSQL dialect)."""
    if getattr(exc, "sqlite_errorname", "") in _UNIQUE:
        return Conflict(f"Already exists: {exc}", code="conflict")
    return StorageError(f"SQLite error: {exc}")


class SqliteStorage(Storage):
    dialect = "sqlite"
    checkpoint_run_id_sql = "json_extract(CAST(metadata AS TEXT), '$.run_id')"
    checkpoint_tables = (
        ("checkpoints", "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"),
        ("writes", "checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value"),
    )
    checkpointer: LoopSqliteSaver

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._wal_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit (isolation_level=None): a lone statement is its own transaction;
            # `transaction()` issues BEGIN IMMEDIATE explicitly. Sync graph nodes reach the
            # store and the checkpointer through the loop, so the connection is only used from
            # the loop's thread;
            # check_same_thread=False lets `dockyard migrate` and tests open it elsewhere.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # WAL: readers never block the writer and a crash never corrupts committed rows.
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: committed transactions survive a process crash; only an OS
            # crash/power loss can roll back the last commits. fsync per commit would cap runs/s.
            conn.execute("PRAGMA synchronous=NORMAL")
            # Enforce REFERENCES (assistant versions cascade with their assistant).
            conn.execute("PRAGMA foreign_keys=ON")
            # A second process (e.g. `dockyard migrate` while dev runs) waits instead of failing.
            conn.execute("PRAGMA busy_timeout=5000")
            # WAL checkpoints (the only fsyncs with synchronous=NORMAL) would stall the event
            # loop; a background thread runs them instead (see _checkpoint_wal_loop).
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self.checkpointer = LoopSqliteSaver(conn)
            self.checkpointer.setup()
            # Sync checkpointer calls from other threads (sync nodes) are run on this loop.
            self.checkpointer.bind_loop(asyncio.get_running_loop())
        except sqlite3.Error as exc:  # driver errors stop at the storage boundary
            raise StorageError(f"Cannot open SQLite database {self.path}: {exc}") from exc
        self._conn = conn
        if self.path != ":memory:":
            self._wal_task = asyncio.create_task(self._checkpoint_wal_loop(), name="sqlite-wal")

    async def close(self) -> None:
        if self._wal_task is not None:
            self._wal_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._wal_task
            self._wal_task = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _checkpoint_wal_loop(self, interval: float = 1.0) -> None:
        """Copy the WAL back into the database file off the loop, once a second.

        PASSIVE never blocks the writer; once the whole WAL is copied SQLite reuses it from
        the start, so the file stays bounded.
        """
        side = sqlite3.connect(self.path, check_same_thread=False)
        running: asyncio.Future[Any] | None = None
        try:
            while True:
                await asyncio.sleep(interval)
                running = asyncio.ensure_future(
                    asyncio.to_thread(side.execute, "PRAGMA wal_checkpoint(PASSIVE)"))
                try:
                    # Shielded: a cancel (close) must not leave the thread using `side`.
                    await asyncio.shield(running)
                except sqlite3.Error as exc:
                    log.warning("wal_checkpoint_failed error=%s", exc)
        finally:
            # Closing a connection while another thread executes on it crashes the process
            # (a segfault, not an exception): wait for an in-flight checkpoint first.
            if running is not None and not running.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait([running])
            if running is None or running.done():
                side.close()  # else (cancelled twice) leak it rather than crash

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("Storage is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[sqlite3.Connection]:
        async with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[sqlite3.Connection]:
        async with self._lock:
            yield self.conn

    async def _execute(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cur = tx.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        count: int = cur.rowcount
        cur.close()
        return count

    async def _fetch(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            cur = tx.execute(sql, tuple(params))
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        cols = [d[0] for d in cur.description or ()]
        cur.close()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def _json_field(self, column: str, path: Sequence[str]) -> str:
        # json_extract() returns SQL values (strings unquoted, booleans as 0/1): re-encode them
        # so that "1", 1 and true stay distinct, and a missing key (NULL) differs from a JSON
        # null, as with JSONB containment. Keys are checked against _KEY_RE by the caller.
        p = "$" + "".join(f'."{k}"' for k in path)
        return (
            f"(CASE json_type({column}, '{p}') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
            f" WHEN 'null' THEN 'null' ELSE nullif(json_quote(json_extract({column}, '{p}')),"
            " 'null') END)"
        )

    def _json_param(self) -> str:
        return "json(?)"

    def _json_contains(self, column: str, key: str, item: Any) -> tuple[str, Any]:
        p = f'$."{key}"'
        return (f"(json_type({column}, '{p}') = 'array' AND EXISTS (SELECT 1 FROM"
                f" json_each({column}, '{p}') AS e WHERE (CASE e.type WHEN 'true' THEN 'true'"
                " WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' WHEN 'object' THEN e.value"
                " WHEN 'array' THEN e.value ELSE json_quote(e.value) END) = json(?)))",
                dumps(item))

    def _transient_driver_error(self, exc: BaseException) -> bool:
        # Another process holding the write lock past busy_timeout (e.g. `dockyard migrate`).
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    async def delete_checkpoints(
        self, thread_id: str, *, run_id: str | None = None, keep_latest: bool = False
    ) -> None:
        where, params = self.checkpoint_filter(thread_id, run_id=run_id, keep_latest=keep_latest)
        async with self.transaction() as tx:
            ids = [r["checkpoint_id"] for r in await self._fetch(
                tx, f"SELECT checkpoint_id FROM checkpoints WHERE {where}", params
            )]
            await self._execute(tx, f"DELETE FROM checkpoints WHERE {where}", params)
            for cid in ids:
                await self._execute(
                    tx, "DELETE FROM writes WHERE thread_id = ? AND checkpoint_id = ?",
                    (thread_id, cid),
                )
