"""SQLite dialect: the embedded default (a WAL file under ``.dockyard/``).

One aiosqlite connection is shared by Dockyard's tables and langgraph's ``AsyncSqliteSaver``,
serialised by the saver's own asyncio lock. In one process this removes writer contention
(no SQLITE_BUSY retries) and keeps each run's queue, thread and checkpoint writes on one thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from dockyard.errors import StorageError
from dockyard.storage.base import Storage


class SqliteStorage(Storage):
    dialect = "sqlite"
    checkpointer: AsyncSqliteSaver

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            # WAL: readers never block the writer and a crash never corrupts committed rows.
            await conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: committed transactions survive a process crash; only an OS
            # crash/power loss can roll back the last commits. fsync per commit would cap runs/s.
            await conn.execute("PRAGMA synchronous=NORMAL")
            # Enforce REFERENCES (assistant versions cascade with their assistant).
            await conn.execute("PRAGMA foreign_keys=ON")
            # A second process (e.g. `dockyard migrate` while dev runs) waits instead of failing.
            await conn.execute("PRAGMA busy_timeout=5000")
        except Exception as exc:  # driver errors stop at the storage boundary
            raise StorageError(f"Cannot open SQLite database {self.path}: {exc}") from exc
        self._conn = conn
        self.checkpointer = AsyncSqliteSaver(conn)
        await self.checkpointer.setup()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageError("Storage is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        # The saver's lock guards the shared connection: one unit of work at a time.
        async with self.checkpointer.lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    async def _execute(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cur = await tx.execute(sql, tuple(params))
        except Exception as exc:
            raise StorageError(f"SQLite error: {exc}") from exc
        count: int = cur.rowcount
        await cur.close()
        return count

    async def _fetch(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            cur = await tx.execute(sql, tuple(params))
            rows = await cur.fetchall()
        except Exception as exc:
            raise StorageError(f"SQLite error: {exc}") from exc
        cols = [d[0] for d in cur.description or ()]
        await cur.close()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def _json_field(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.\"{key}\"')"

    def _json_param(self) -> str:
        return "json(?)"

    async def delete_checkpoints(
        self, thread_id: str, *, run_id: str | None = None, keep_latest: bool = False
    ) -> None:
        async with self.transaction() as tx:
            where = "thread_id = ?"
            params: list[Any] = [thread_id]
            if run_id is not None:
                where += " AND json_extract(CAST(metadata AS TEXT), '$.run_id') = ?"
                params.append(run_id)
            if keep_latest:
                where += (
                    " AND checkpoint_id NOT IN (SELECT MAX(checkpoint_id) FROM checkpoints"
                    " WHERE thread_id = ? AND checkpoint_ns = '')"
                )
                params.append(thread_id)
            ids = [r["checkpoint_id"] for r in await self._fetch(
                tx, f"SELECT checkpoint_id FROM checkpoints WHERE {where}", params
            )]
            await self._execute(tx, f"DELETE FROM checkpoints WHERE {where}", params)
            for cid in ids:
                await self._execute(
                    tx, "DELETE FROM writes WHERE thread_id = ? AND checkpoint_id = ?",
                    (thread_id, cid),
                )

    async def copy_checkpoints(self, src_thread: str, dst_thread: str) -> None:
        async with self.transaction() as tx:
            await self._execute(
                tx,
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id,"
                " parent_checkpoint_id, type, checkpoint, metadata)"
                " SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type,"
                " checkpoint, metadata FROM checkpoints WHERE thread_id = ?",
                (dst_thread, src_thread),
            )
            await self._execute(
                tx,
                "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx,"
                " channel, type, value) SELECT ?, checkpoint_ns, checkpoint_id, task_id, task_path, idx,"
                " channel, type, value FROM writes WHERE thread_id = ?",
                (dst_thread, src_thread),
            )
