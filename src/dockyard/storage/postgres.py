"""PostgreSQL dialect: the production database (psycopg 3 and a connection pool).

One ``AsyncConnectionPool`` serves Dockyard's tables and langgraph's Postgres checkpointer.
Connections are in autocommit mode, as the checkpointer requires: a lone statement is its own
transaction, ``transaction()`` opens an explicit one. Workers of every process are woken by
LISTEN/NOTIFY on a connection of their own, re-established after a server restart.

Shared SQL is written once with ``?`` placeholders; ``to_pyformat`` turns them into psycopg's
``%s`` outside string literals, quoted identifiers and comments. JSON columns are JSONB, read
back as text so that ``decode_row`` decodes both dialects alike (a JSONB string is otherwise
already a Python ``str`` and indistinguishable from JSON text). Text columns use the "C"
collation: comparisons and ``ORDER BY`` are by bytes, as in SQLite, whatever the database's
locale, and the ISO timestamps stored as text keep sorting chronologically.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg
import psycopg._queries as _psycopg_queries
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from dockyard.errors import ConfigError, Conflict, DockyardError, InvalidInput, StorageError
from dockyard.storage.base import Storage, decode_rows, dumps
from dockyard.storage.postgres_saver import PooledPostgresSaver

log = logging.getLogger("dockyard.storage")

Conn = AsyncConnection[DictRow]

# The channel on which `notify_runs` wakes the workers of every process.
RUNS_CHANNEL = "dockyard_runs"

# pg_advisory_lock key serialising `migrate()` across processes ("dockyard" in ASCII).
MIGRATION_LOCK = int.from_bytes(b"dockyard", "big")

# Portable DDL types → PostgreSQL. INTEGER is 64-bit in SQLite, so BIGINT keeps the range.
_DDL_TYPES = [
    (re.compile(r"\bJSON\b", re.IGNORECASE), "JSONB"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
    (re.compile(r"\bTEXT\b(?!\s+COLLATE)", re.IGNORECASE), 'TEXT COLLATE "C"'),
]


def _segments(sql: str) -> Iterator[tuple[bool, str]]:
    """Split SQL into ``(is_code, text)``: string literals, quoted identifiers and comments
    are not code (a ``?`` or a type name inside them is left alone)."""
    i, n, start = 0, len(sql), 0
    while i < n:
        ch = sql[i]
        end = -1
        if ch == "'":
            # E'…' strings take backslash escapes; standard strings only double the quote.
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum()
                                                                        or sql[i - 2] == "_"))
            j = i + 1
            while j < n:
                if escapes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            end = j + 1
        elif ch == '"':
            j = i + 1
            while j < n and not (sql[j] == '"' and not (j + 1 < n and sql[j + 1] == '"')):
                j += 2 if sql[j] == '"' else 1
            end = j + 1
        elif sql.startswith("--", i):
            nl = sql.find("\n", i)
            end = n if nl < 0 else nl
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            end = n if close < 0 else close + 2
        if end < 0:
            i += 1
            continue
        if start < i:
            yield True, sql[start:i]
        yield False, sql[i:min(end, n)]
        i = start = min(end, n)
    if start < n:
        yield True, sql[start:]


@functools.lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders → ``%s``, and every literal ``%`` → ``%%`` (psycopg's escape)."""
    out = []
    for is_code, text in _segments(sql):
        text = text.replace("%", "%%")
        out.append(text.replace("?", "%s") if is_code else text)
    return "".join(out)


def adapt_ddl(stmt: str) -> str:
    """The portable migration DDL in PostgreSQL's types (outside literals and identifiers)."""
    out = []
    for is_code, text in _segments(stmt):
        if is_code:
            for pattern, replacement in _DDL_TYPES:
                text = pattern.sub(replacement, text)
        out.append(text)
    return "".join(out)


_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE)\s", re.IGNORECASE)


def _params(params: Sequence[Any]) -> tuple[Any, ...]:
    # SQLite stores booleans as 0/1 in INTEGER columns; PostgreSQL refuses a boolean there.
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


def _values(statements: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
    """The values of ``statements``, in the order of their placeholders in one query."""
    return [v for _, params in statements for v in _params(params)]


def _multi_statement(statements: Sequence[tuple[str, Sequence[Any]]]) -> str:
    """``statements`` as one multi-statement query (values bound on the client)."""
    return ";\n".join(to_pyformat(q) for q, _ in statements)


_CTE = re.compile(r"\s*([A-Za-z_]\w*)\s+AS\s+(?:(?:NOT\s+)?MATERIALIZED\s+)?\(", re.IGNORECASE)
_WITH = re.compile(r"\s*WITH\s", re.IGNORECASE)
_COMMA = re.compile(r"\s*,")
_STATEMENT_CTE = re.compile(r"s\d+", re.IGNORECASE)


def split_with(sql: str) -> tuple[list[tuple[str, str]], str] | None:
    """A statement with a ``WITH`` clause as its CTEs (``(name, "name AS (…)")``, in order)
    and its main statement; None if it has none, or one this does not take apart (RECURSIVE,
    column lists). Literals, quoted identifiers and comments are not parsed."""
    mask = "".join(text if code else " " * len(text) for code, text in _segments(sql))
    head = _WITH.match(mask)
    if head is None:
        return None
    ctes: list[tuple[str, str]] = []
    pos = head.end()
    while True:
        cte = _CTE.match(mask, pos)
        if cte is None:
            return None
        depth, i = 1, cte.end()
        while depth:
            if i >= len(mask):
                return None
            depth += {"(": 1, ")": -1}.get(mask[i], 0)
            i += 1
        ctes.append((cte.group(1).lower(), sql[cte.start(1):i]))
        comma = _COMMA.match(mask, i)
        if comma is None:
            return ctes, sql[i:].lstrip()
        pos = comma.end()


@functools.lru_cache(maxsize=256)
def _together(statements: tuple[str, ...]) -> str | None:
    """``execute_together``'s one statement: each statement's own CTEs, in order, then the
    statement as the CTE ``s<i>`` (the last one as the main statement); None where that is
    not possible (a leading statement that is not a write, two CTEs of one name)."""
    parts: list[str] = []
    names: set[str] = set()
    last = len(statements) - 1
    for i, sql in enumerate(statements):
        split = split_with(sql)
        ctes, main = split if split is not None else ([], sql)
        for name, text in ctes:
            if name in names or _STATEMENT_CTE.fullmatch(name):
                return None
            names.add(name)
            parts.append(to_pyformat(text))
        if i < last:
            if not _WRITE.match(main):
                return None
            parts.append(f"s{i} AS ({to_pyformat(main)})")
    return "WITH " + ", ".join(parts) + " " + to_pyformat(main)


def _translate(exc: psycopg.Error) -> DockyardError:
    """Driver errors stop at the storage boundary."""
    if isinstance(exc, UniqueViolation):
        detail = exc.diag.message_detail or exc.diag.message_primary or "duplicate key"
        return Conflict(f"Already exists: {detail}", code="conflict")
    if isinstance(exc, psycopg.DataError):
        # SQLSTATE class 22 and psycopg's own check: a value PostgreSQL cannot hold, such as
        # a NUL character in text or JSON (SQLite stores it). The client's data, not an outage.
        primary = exc.diag.message_primary or str(exc).splitlines()[0]
        return InvalidInput(f"Invalid value for PostgreSQL: {primary}", code="invalid_value")
    return StorageError(f"PostgreSQL error: {exc}")


def _json_dumps(obj: Any) -> bytes | str:
    # orjson where it can (3-10x faster than json.dumps on a checkpoint and its metadata, which
    # langgraph's saver sends as Jsonb at every step); json.dumps, as before, where it cannot.
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(obj)


def _json_loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # e.g. an integer beyond 64 bits, which json.loads reads
        return json.loads(data)


# Statements bound on the server are prepared on a connection at their first execution there
# (psycopg's default waits for the fifth). The pool hands its connections out in turn, so under
# the default a busy process with twenty connections planned its hot statements anew for about
# a hundred executions each, and kept planning any statement run less often than that: the
# claim's plan alone costs PostgreSQL 0.7 ms. Preparing costs one extra round trip, once per
# statement and connection; the cache keeps the most recent PREPARED_MAX.
PREPARE_THRESHOLD = 0
PREPARED_MAX = 256
# psycopg parses a query's placeholders once and caches the result, but only for queries of
# up to 4 KB and 50 parameters: a run's outcome (run, checkpoint, thread and trace rows in one
# statement) has more, and was parsed again at every execution (2-3% of a worker's CPU).
QUERY_CACHE_LENGTH = 64 * 1024
QUERY_CACHE_PARAMS = 2000
if hasattr(_psycopg_queries, "MAX_CACHED_STATEMENT_PARAMS"):
    _psycopg_queries.MAX_CACHED_STATEMENT_LENGTH = max(
        _psycopg_queries.MAX_CACHED_STATEMENT_LENGTH, QUERY_CACHE_LENGTH)
    _psycopg_queries.MAX_CACHED_STATEMENT_PARAMS = max(
        _psycopg_queries.MAX_CACHED_STATEMENT_PARAMS, QUERY_CACHE_PARAMS)


async def _configure(conn: Conn) -> None:
    """Each pool connection adapts JSON with orjson (the checkpointer's Jsonb values) and keeps
    up to PREPARED_MAX prepared statements."""
    set_json_dumps(_json_dumps, conn)
    set_json_loads(_json_loads, conn)
    conn.prepared_max = PREPARED_MAX


class _HotFirst(collections.deque[Any]):
    """The pool's idle connections, handed out most recently returned first.

    psycopg's pool hands them out in turn (``popleft`` of those appended on return), so every
    connection of a pool grown by a burst is used in rotation and each of their PostgreSQL
    backends stays cold: a sequential ``runs.wait`` took 16.5 ms at the median against 14.7 ms
    with the hottest connection first, and PostgreSQL spent 0.3 ms more CPU per run. The pool
    also ``popleft``s when it shrinks, closing the connection returned last rather than the
    coldest; either closes one that was idle the whole period.
    """

    def popleft(self) -> Any:
        return self.pop()


class _Pool(AsyncConnectionPool[Conn]):
    """psycopg's pool, handing out the most recently returned connection first (``_HotFirst``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(getattr(self, "_pool", None), collections.deque):
            self._pool = _HotFirst()  # not opened yet: no connection is in it


class PostgresStorage(Storage):
    dialect = "postgres"
    checkpoint_run_id_sql = "metadata ->> 'run_id'"
    checkpoint_tables = (
        ("checkpoints", "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"),
        ("checkpoint_blobs", "checkpoint_ns, channel, version, type, blob"),
        ("checkpoint_writes", "checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob"),
    )
    checkpointer: PooledPostgresSaver
    row_lock = " FOR UPDATE"
    claim_lock = " FOR UPDATE SKIP LOCKED"
    writable_ctes = True

    async def lock_key(self, tx: Any, key: str) -> None:
        await self._execute(tx, "SELECT pg_advisory_xact_lock(hashtext(?))", (f"dockyard:{key}",))

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 20, connect_timeout: float = 5.0
    ) -> None:
        self.url = url
        self.min_size = min_size
        # migrate() holds one connection for its lock while it migrates on another.
        self.max_size = max(max_size, 2)
        self.connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[Conn] | None = None
        try:
            info = conninfo_to_dict(url)
        except psycopg.Error:
            # The message would quote the URL, password included.
            raise ConfigError(
                "DOCKYARD_DATABASE_URL: invalid PostgreSQL URL", key="DOCKYARD_DATABASE_URL"
            ) from None
        self._password = str(info.get("password") or "")
        # Connections made outside the pool (the probe, the listener) give up after a while.
        self._conninfo = url if "connect_timeout" in info else make_conninfo(
            url, connect_timeout=max(1, round(connect_timeout))
        )
        self._listener: asyncio.Task[None] | None = None
        self._listen_conn: AsyncConnection[Any] | None = None
        self.where = (
            f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"
        )

    def _scrub(self, message: object) -> str:
        text = str(message)
        return text.replace(self._password, "***") if self._password else text

    # ---- engine setup -----------------------------------------------------------------------
    async def open(self) -> None:
        # One plain connection first: a wrong host or password fails now, with libpq's reason,
        # instead of after the pool's retries time out with none.
        try:
            probe = await AsyncConnection.connect(self._conninfo)
            await probe.close()
        except psycopg.Error as exc:
            raise StorageError(
                f"Cannot connect to PostgreSQL at {self.where}: {self._scrub(exc)}"
            ) from None
        pool: AsyncConnectionPool[Conn] = _Pool(
            self.url,
            min_size=self.min_size,
            max_size=self.max_size,
            # autocommit and dict rows: what langgraph's saver expects of the connections.
            kwargs={"autocommit": True, "row_factory": dict_row,
                    "prepare_threshold": PREPARE_THRESHOLD},
            connection_class=AsyncConnection[DictRow],
            configure=_configure,
            open=False,
            name="dockyard",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise StorageError(
                f"Cannot open a connection pool to PostgreSQL at {self.where}: {self._scrub(exc)}"
            ) from None
        self._pool = pool
        self.checkpointer = PooledPostgresSaver(pool)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._listen_conn is not None:
            await self._listen_conn.close()
            self._listen_conn = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise StorageError("Storage is not open")
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        try:
            async with self.pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:  # pool timeouts, a lost server, a failed COMMIT
            raise _translate(exc) from exc

    # ---- units of work --------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[Conn]:
        # Autocommit: the statement is its own transaction.
        async with self._connection() as conn:
            yield conn

    async def _execute(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> int:
        conn: Conn = tx
        try:
            if params:
                cur = await conn.execute(to_pyformat(sql), _params(params))
            else:  # no parameters: psycopg sends the text as is, '%' included
                cur = await conn.execute(sql)
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        return cur.rowcount

    async def _fetch(self, tx: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        conn: Conn = tx
        try:
            async with conn.cursor() as cur:
                # JSONB as its text: decode_row decodes it, as SQLite's TEXT (see module doc).
                cur.adapters.register_loader("jsonb", TextLoader)
                if params:
                    await cur.execute(to_pyformat(sql), _params(params))
                else:
                    await cur.execute(sql)
                return list(await cur.fetchall())
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    async def fetch_batch(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[dict[str, Any]]]:
        # One round trip in pipeline mode: each statement bound on the server and prepared
        # once per connection. As one multi-statement query with values bound on the client,
        # PostgreSQL parsed and planned the four reads of a run's creation at every call
        # (0.2 ms of its CPU, against 0.06 ms prepared).
        if not statements:
            return []
        async with self._connection() as conn:
            try:
                cursors = []
                async with conn.pipeline():
                    for sql, params in statements:
                        cur = conn.cursor(row_factory=dict_row)
                        cur.adapters.register_loader("jsonb", TextLoader)
                        if params:
                            await cur.execute(to_pyformat(sql), _params(params))
                        else:
                            await cur.execute(sql)
                        cursors.append(cur)
                return [decode_rows(await cur.fetchall()) for cur in cursors]
            except psycopg.Error as exc:
                raise _translate(exc) from exc

    async def execute_together(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        sql = _together(tuple(q for q, _ in statements)) if len(statements) > 1 else None
        if sql is None:
            await self.execute_batch(statements)
            return
        async with self._connection() as conn:
            try:
                await conn.execute(sql, _values(statements))
            except psycopg.Error as exc:
                raise _translate(exc) from exc

    async def execute_batch(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        # One query message holding every statement, its values bound on the client: PostgreSQL
        # runs a multi-statement query as one implicit transaction (all or nothing, one commit)
        # in one round trip. A psycopg pipeline costs the same round trip but far more client
        # CPU (its send/receive loop spins while the server works).
        if not statements:
            return
        async with self._connection() as conn:
            try:
                async with AsyncClientCursor(conn) as cur:
                    await cur.execute(_multi_statement(statements), _values(statements))
            except psycopg.Error as exc:
                raise _translate(exc) from exc

    # ---- wake-ups across processes (LISTEN/NOTIFY) -------------------------------------------
    async def notify_runs(self, kind: str = "") -> None:
        try:
            await self.execute(*self._notify(kind))
        except StorageError as exc:  # best effort: workers also poll
            log.warning("notify_runs_failed error=%s", exc)

    def notify_statement(self, kind: str = "") -> tuple[str, Sequence[Any]] | None:
        # NOTIFY is transactional: PostgreSQL delivers it at COMMIT, and drops it on ROLLBACK.
        return self._notify(kind)

    @staticmethod
    def _notify(kind: str) -> tuple[str, Sequence[Any]]:
        return f"SELECT pg_notify('{RUNS_CHANNEL}', ?)", (kind,)

    async def listen_runs(self, callback: Callable[[str], None]) -> None:
        """LISTEN on a connection of its own (outside the pool, which would recycle it)."""
        try:
            self._listen_conn = await self._listen()
        except psycopg.Error as exc:
            raise StorageError(f"Cannot LISTEN on PostgreSQL at {self.where}: {self._scrub(exc)}") from None
        self._listener = asyncio.create_task(self._listen_loop(callback), name="dockyard-pg-listen")

    async def _listen(self) -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(self._conninfo, autocommit=True)
        await conn.execute(f"LISTEN {RUNS_CHANNEL}")
        return conn

    async def _listen_loop(self, callback: Callable[[str], None]) -> None:
        delay = 0.1
        while True:
            if self._listen_conn is not None:
                try:
                    async for note in self._listen_conn.notifies():
                        callback(note.payload)
                except psycopg.Error as exc:
                    log.warning("listen_lost error=%s", self._scrub(exc))
                await self._listen_conn.close()
                self._listen_conn = None
            # The server restarted or the network dropped: reconnect, backing off.
            await asyncio.sleep(delay)
            try:
                self._listen_conn = await self._listen()
            except psycopg.Error as exc:
                delay = min(delay * 2, 5.0)
                log.warning("listen_reconnect_failed error=%s", self._scrub(exc))
                continue
            delay = 0.1
            log.info("listen_reconnected")
            callback("")  # notifications sent while disconnected are lost: look now

    # ---- JSON filters ----------------------------------------------------------------------------
    def _json_field(self, column: str, path: Sequence[str]) -> str:
        # jsonb equality: "1", 1 and true differ, a missing key (SQL NULL) matches nothing while
        # a JSON null matches null, arrays compare in order. Keys are checked by the caller.
        return "(" + column + "".join(f" -> '{k}'" for k in path) + ")"

    def _json_param(self) -> str:
        return "CAST(? AS jsonb)"

    def byte_length(self, column: str) -> str:
        return f"octet_length(CAST({column} AS text))"

    def _json_contains(self, column: str, key: str, item: Any) -> tuple[str, Any]:
        # jsonb_typeof: `"x" @> '["x"]'` is false anyway, but a scalar would match a scalar.
        return (f"(jsonb_typeof({column} -> '{key}') = 'array'"
                f" AND ({column} -> '{key}') @> CAST(? AS jsonb))", dumps([item]))

    # ---- migrations -------------------------------------------------------------------------------
    def _adapt_ddl(self, stmt: str) -> str:
        return adapt_ddl(stmt)

    async def migrate(self) -> list[str]:
        """Dockyard's migrations, then the checkpointer's, under one advisory lock so that API
        replicas and workers starting together apply each migration once."""
        async with self._advisory_lock(MIGRATION_LOCK):
            applied = await super().migrate()
            try:
                await self.checkpointer.setup()
                async with self._connection() as conn:
                    # langgraph indexes thread_id on its three tables, where the primary keys
                    # already start with it. With no statistics yet (a new database) the planner
                    # takes the narrower index and filters the whole thread's rows for every
                    # write or link it looks up (quadratic in a thread's steps); without it,
                    # every lookup is the primary key's, and the tables are smaller.
                    await conn.execute(
                        "DROP INDEX IF EXISTS checkpoints_thread_id_idx,"
                        " checkpoint_blobs_thread_id_idx, checkpoint_writes_thread_id_idx")
            except psycopg.Error as exc:
                raise _translate(exc) from exc
        return applied

    @asynccontextmanager
    async def _advisory_lock(self, key: int, poll: float = 0.05) -> AsyncIterator[None]:
        # Polled with pg_try_advisory_lock rather than blocking in pg_advisory_lock: a waiter
        # blocked inside a statement holds a snapshot, and the checkpointer's
        # CREATE INDEX CONCURRENTLY waits for every older snapshot — a deadlock.
        async with self._connection() as conn:
            while True:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (key,))
                row = await cur.fetchone()
                if row and row["ok"]:
                    break
                await asyncio.sleep(poll)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    # ---- checkpoints (over langgraph's tables) ------------------------------------------------
    def _transient_driver_error(self, exc: BaseException) -> bool:
        # Lost connections, a restarting server, admin shutdown, pool timeouts: retry later.
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | PoolTimeout):
            return True
        sqlstate = getattr(exc, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in ("08", "57")

    async def delete_checkpoints(
        self, thread_id: str, *, run_id: str | None = None, keep_latest: bool = False
    ) -> None:
        where, params = self.checkpoint_filter(thread_id, run_id=run_id, keep_latest=keep_latest)
        async with self.transaction() as tx:
            if run_id is not None or keep_latest:
                # A kept list may refer to a write of a checkpoint about to go (postgres_saver:
                # a `dyref:` row): it takes the write's bytes first (`dydelta:`).
                await self._execute(
                    tx,
                    "UPDATE checkpoint_blobs b SET blob = w.blob, type = 'dydelta:'"
                    " || split_part(b.type, ':', 2) || ':' || split_part(b.type, ':', 3)"
                    " || ':' || split_part(b.type, ':', 7)"
                    " FROM checkpoint_writes w"
                    " WHERE b.thread_id = ? AND starts_with(b.type, 'dyref:')"
                    " AND w.thread_id = b.thread_id AND w.checkpoint_ns = b.checkpoint_ns"
                    " AND w.checkpoint_id = split_part(b.type, ':', 4)"
                    " AND w.task_id = split_part(b.type, ':', 5)"
                    " AND w.idx = split_part(b.type, ':', 6)::integer"
                    f" AND w.checkpoint_id IN (SELECT checkpoint_id FROM checkpoints WHERE {where})",
                    [thread_id, *params],
                )
            # The deleted checkpoints' pending writes go with them.
            await self._execute(
                tx,
                f"WITH gone AS (DELETE FROM checkpoints WHERE {where} RETURNING checkpoint_id)"
                " DELETE FROM checkpoint_writes WHERE thread_id = ?"
                " AND checkpoint_id IN (SELECT checkpoint_id FROM gone)",
                [*params, thread_id],
            )
            # Channel values are stored once per (channel, version) and shared by checkpoints:
            # drop the blobs that no remaining checkpoint of the thread refers to, directly or
            # as the base of a stored append (postgres_saver: a `dydelta:<base>:…` or `dyref:` row).
            await self._execute(
                tx,
                "WITH RECURSIVE live(checkpoint_ns, channel, version, type) AS ("
                " SELECT b.checkpoint_ns, b.channel, b.version, b.type FROM checkpoints c"
                " CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') v"
                " JOIN checkpoint_blobs b ON b.thread_id = c.thread_id"
                " AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = v.key"
                " AND b.version = v.value"
                " WHERE c.thread_id = ?"
                " UNION"
                " SELECT b.checkpoint_ns, b.channel, b.version, b.type FROM live l"
                " JOIN checkpoint_blobs b ON b.thread_id = ?"
                " AND b.checkpoint_ns = l.checkpoint_ns AND b.channel = l.channel"
                " AND b.version = split_part(l.type, ':', 2)"
                " WHERE split_part(l.type, ':', 1) IN ('dydelta', 'dyref'))"
                " DELETE FROM checkpoint_blobs b WHERE b.thread_id = ? AND NOT EXISTS ("
                " SELECT 1 FROM live l WHERE l.checkpoint_ns = b.checkpoint_ns"
                " AND l.channel = b.channel AND l.version = b.version)",
                (thread_id, thread_id, thread_id),
            )
