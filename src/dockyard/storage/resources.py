"""Shared SQL for assistants, threads and store items (runs live in ``queue.py``).

Every query is scoped by ``tenant_id``: the column exists on every row from day one so that
teams (tenants) land without a schema rewrite.
"""

from __future__ import annotations

from typing import Any

from dockyard.storage.base import Storage, dumps, utcnow

ASSISTANT_COLS = (
    "assistant_id, graph_id, name, description, config, context, metadata, version,"
    " created_at, updated_at"
)


class Assistants:
    def __init__(self, db: Storage) -> None:
        self.db = db

    async def get(self, tenant: str, assistant_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone(*self.get_statement(tenant, assistant_id))

    @staticmethod
    def get_statement(tenant: str, assistant_id: str) -> tuple[str, tuple[Any, ...]]:
        """``get``'s read, for ``Storage.fetch_batch``."""
        return (f"SELECT {ASSISTANT_COLS} FROM assistants WHERE tenant_id = ? AND assistant_id = ?",
                (tenant, assistant_id))

    async def get_version(self, tenant: str, assistant_id: str, version: int) -> dict[str, Any] | None:
        return await self.db.fetchone(
            "SELECT assistant_id, version, graph_id, name, description, config, context,"
            " metadata, created_at FROM assistant_versions"
            " WHERE tenant_id = ? AND assistant_id = ? AND version = ?",
            (tenant, assistant_id, version),
        )

    async def insert(self, tenant: str, row: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        row = {**row, "version": 1, "created_at": now, "updated_at": now}
        async with self.db.transaction() as tx:
            await self.db._execute(
                tx,
                "INSERT INTO assistants (assistant_id, tenant_id, graph_id, name, description,"
                " config, context, metadata, version, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row["assistant_id"], tenant, row["graph_id"], row["name"],
                    row.get("description"), dumps(row["config"]), dumps(row["context"]),
                    dumps(row["metadata"]), 1, now, now,
                ),
            )
            await self._insert_version(tx, tenant, row, 1, now)
        return row

    async def _insert_version(
        self, tx: Any, tenant: str, row: dict[str, Any], version: int, now: str
    ) -> None:
        await self.db._execute(
            tx,
            "INSERT INTO assistant_versions (assistant_id, version, tenant_id, graph_id, name,"
            " description, config, context, metadata, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["assistant_id"], version, tenant, row["graph_id"], row["name"],
                row.get("description"), dumps(row["config"]), dumps(row["context"]),
                dumps(row["metadata"]), now,
            ),
        )

    async def new_version(self, tenant: str, row: dict[str, Any]) -> dict[str, Any]:
        """Store ``row`` as a new version and make it the current one."""
        now = utcnow()
        async with self.db.transaction() as tx:
            # Concurrent updates of one assistant take turns (PostgreSQL: the row lock; SQLite:
            # its single writer), so each gets its own version number.
            await self.db._fetch(
                tx, "SELECT version FROM assistants WHERE tenant_id = ? AND assistant_id = ?"
                + self.db.row_lock, (tenant, row["assistant_id"]),
            )
            latest = await self.db._fetch(
                tx,
                "SELECT MAX(version) AS v FROM assistant_versions WHERE assistant_id = ?",
                (row["assistant_id"],),
            )
            version = int(latest[0]["v"] or 0) + 1
            await self._insert_version(tx, tenant, row, version, now)
            await self._write_current(tx, tenant, row, version, now)
        return {**row, "version": version, "updated_at": now}

    async def set_current(self, tenant: str, row: dict[str, Any], version: int) -> None:
        async with self.db.transaction() as tx:
            await self._write_current(tx, tenant, row, version, utcnow())

    async def _write_current(
        self, tx: Any, tenant: str, row: dict[str, Any], version: int, now: str
    ) -> None:
        await self.db._execute(
            tx,
            "UPDATE assistants SET graph_id = ?, name = ?, description = ?, config = ?,"
            " context = ?, metadata = ?, version = ?, updated_at = ?"
            " WHERE tenant_id = ? AND assistant_id = ?",
            (
                row["graph_id"], row["name"], row.get("description"), dumps(row["config"]),
                dumps(row["context"]), dumps(row["metadata"]), version, now, tenant,
                row["assistant_id"],
            ),
        )

    async def delete(self, tenant: str, assistant_id: str) -> int:
        async with self.db.transaction() as tx:
            # Its crons go with it: each tick would fail to find the assistant.
            await self.db._execute(
                tx, "DELETE FROM crons WHERE tenant_id = ? AND assistant_id = ?",
                (tenant, assistant_id),
            )
            return await self.db._execute(
                tx, "DELETE FROM assistants WHERE tenant_id = ? AND assistant_id = ?",
                (tenant, assistant_id),
            )

    def _where(
        self, tenant: str, graph_id: str | None, name: str | None, metadata: dict[str, Any] | None,
        auth_filter: dict[str, Any] | None = None,
    ) -> tuple[str, list[Any]]:
        clauses, params = ["tenant_id = ?"], [tenant]
        if graph_id:
            clauses.append("graph_id = ?")
            params.append(graph_id)
        if name:
            # lower() on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not.
            clauses.append("lower(name) LIKE lower(?)")
            params.append(f"%{name}%")
        self.db.json_filter("metadata", metadata, clauses, params)
        self.db.auth_filter("metadata", auth_filter, clauses, params)
        return " AND ".join(clauses), params

    async def search(
        self,
        tenant: str,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str | None = None,
        sort_order: str | None = None,
        auth_filter: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        where, params = self._where(tenant, graph_id, name, metadata, auth_filter)
        order = self.db.order_by("assistants", sort_by, sort_order, "created_at")
        return await self.db.fetchall(
            f"SELECT {ASSISTANT_COLS} FROM assistants WHERE {where} {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )

    async def count(
        self, tenant: str, *, graph_id: str | None = None, name: str | None = None,
        metadata: dict[str, Any] | None = None, auth_filter: dict[str, Any] | None = None,
    ) -> int:
        where, params = self._where(tenant, graph_id, name, metadata, auth_filter)
        row = await self.db.fetchone(f"SELECT COUNT(*) AS n FROM assistants WHERE {where}", params)
        return int(row["n"]) if row else 0

    async def versions(
        self, tenant: str, assistant_id: str, *, metadata: dict[str, Any] | None, limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        clauses, params = ["tenant_id = ?", "assistant_id = ?"], [tenant, assistant_id]
        self.db.json_filter("metadata", metadata, clauses, params)
        return await self.db.fetchall(
            "SELECT assistant_id, version, graph_id, name, description, config, context,"
            f" metadata, created_at FROM assistant_versions WHERE {' AND '.join(clauses)}"
            " ORDER BY version DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )


THREAD_COLS = (
    'thread_id, status, metadata, config, "values", interrupts, error, created_at, updated_at,'
    ' revision_id'
)


_THREAD_JSON = ("metadata", "values", "interrupts", "config", "error")


class Threads:
    def __init__(self, db: Storage) -> None:
        self.db = db

    async def get(self, tenant: str, thread_id: str) -> dict[str, Any] | None:
        return await self.db.fetchone(*self.get_statement(tenant, thread_id))

    @staticmethod
    def get_statement(tenant: str, thread_id: str) -> tuple[str, tuple[Any, ...]]:
        """``get``'s read, for ``Storage.fetch_batch``."""
        return (f"SELECT {THREAD_COLS} FROM threads WHERE tenant_id = ? AND thread_id = ?",
                (tenant, thread_id))

    async def insert(
        self, tenant: str, thread_id: str, metadata: dict[str, Any], *,
        if_exists: str = "raise", tx: Any = None,
    ) -> dict[str, Any] | None:
        """Insert; returns None if the id exists and ``if_exists`` is 'raise'."""
        sql, params = self.insert_statement(tenant, thread_id, metadata)
        n = await self.db.execute_in(tx, sql + " ON CONFLICT DO NOTHING", params)
        if n == 0:
            return None
        return await self.db.fetchone_in(
            tx, f"SELECT {THREAD_COLS} FROM threads WHERE tenant_id = ? AND thread_id = ?",
            (tenant, thread_id),
        )

    def insert_statement(
        self, tenant: str, thread_id: str, metadata: dict[str, Any], *, status: str = "idle",
        revision_id: str | None = None, where: str | None = None,
    ) -> tuple[str, list[Any]]:
        """A new thread's INSERT, for a caller that commits it with others (a stateless run's
        thread, busy from the start); the id must be new: a clash fails the statement.

        ``where``: a condition of the caller's statement (PostgreSQL): the row is inserted only
        if it holds."""
        now = utcnow()
        cols = ("INSERT INTO threads (thread_id, tenant_id, status, metadata, config,"
                " \"values\", interrupts, created_at, updated_at, revision_id)")
        # A SELECT list does not take its values' types from the columns, as VALUES does.
        values = " VALUES (?, ?, ?, ?, '{}', NULL, '{}', ?, ?, ?)" if where is None else (
            " SELECT ?, ?, ?, ?::jsonb, '{}'::jsonb, NULL::jsonb, '{}'::jsonb, ?, ?, ?"
            f" WHERE {where}")
        return cols + values, [thread_id, tenant, status, dumps(metadata), now, now,
                               revision_id]

    async def update(self, tenant: str, thread_id: str, *, tx: Any = None, **fields: Any) -> int:
        return await self.db.execute_in(tx, *self.update_statement(tenant, thread_id, **fields))

    def update_statement(
        self, tenant: str, thread_id: str, **fields: Any
    ) -> tuple[str, list[Any]]:
        """``update`` as a statement, for a caller that commits it with others."""
        sets, params = [], []
        for key, value in fields.items():
            col = '"values"' if key == "values" else key
            sets.append(f"{col} = ?")
            # Every JSON column is encoded here: rows are decoded by JSON_COLUMNS on the way out.
            params.append(dumps(value) if key in _THREAD_JSON else value)
        sets.append("updated_at = ?")
        params.append(utcnow())
        return (f"UPDATE threads SET {', '.join(sets)} WHERE tenant_id = ? AND thread_id = ?",
                [*params, tenant, thread_id])

    async def delete(self, tenant: str, thread_id: str) -> int:
        async with self.db.transaction() as tx:
            # The runs' traces go with them (run_traces_thread finds them).
            await self.db._execute(
                tx, "DELETE FROM run_spans WHERE run_id IN (SELECT run_id FROM run_traces"
                " WHERE tenant_id = ? AND thread_id = ?)", (tenant, thread_id))
            await self.db._execute(
                tx, "DELETE FROM run_traces WHERE tenant_id = ? AND thread_id = ?",
                (tenant, thread_id))
            await self.db._execute(
                tx, "DELETE FROM runs WHERE tenant_id = ? AND thread_id = ?", (tenant, thread_id)
            )
            # A thread's crons go with it: they could only fire into a missing thread.
            await self.db._execute(
                tx, "DELETE FROM crons WHERE tenant_id = ? AND thread_id = ?", (tenant, thread_id)
            )
            return await self.db._execute(
                tx, "DELETE FROM threads WHERE tenant_id = ? AND thread_id = ?", (tenant, thread_id)
            )

    def _where(
        self, tenant: str, *, ids: list[str] | None, metadata: dict[str, Any] | None,
        values: dict[str, Any] | None, status: str | None,
        auth_filter: dict[str, Any] | None = None,
    ) -> tuple[str, list[Any]]:
        clauses, params = ["tenant_id = ?"], [tenant]
        if ids:
            clauses.append(f"thread_id IN ({', '.join('?' for _ in ids)})")
            params.extend(ids)
        if status:
            clauses.append("status = ?")
            params.append(status)
        self.db.json_filter("metadata", metadata, clauses, params)
        self.db.json_filter('"values"', values, clauses, params)
        self.db.auth_filter("metadata", auth_filter, clauses, params)
        return " AND ".join(clauses), params

    async def search(
        self, tenant: str, *, ids: list[str] | None = None, metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None, status: str | None = None, limit: int = 10,
        offset: int = 0, sort_by: str | None = None, sort_order: str | None = None,
        auth_filter: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        where, params = self._where(
            tenant, ids=ids, metadata=metadata, values=values, status=status,
            auth_filter=auth_filter,
        )
        order = self.db.order_by("threads", sort_by, sort_order, "created_at")
        return await self.db.fetchall(
            f"SELECT {THREAD_COLS} FROM threads WHERE {where} {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )

    async def count(
        self, tenant: str, *, metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None, status: str | None = None,
        auth_filter: dict[str, Any] | None = None,
    ) -> int:
        where, params = self._where(tenant, ids=None, metadata=metadata, values=values,
                                    status=status, auth_filter=auth_filter)
        row = await self.db.fetchone(f"SELECT COUNT(*) AS n FROM threads WHERE {where}", params)
        return int(row["n"]) if row else 0

    async def older_than(self, before: str, limit: int) -> dict[str, list[str]]:
        """Idle threads not updated since ``before``, of every tenant: tenant → thread ids."""
        rows = await self.db.fetchall(
            "SELECT tenant_id, thread_id FROM threads WHERE updated_at < ?"
            " AND status != 'busy' ORDER BY updated_at LIMIT ?",
            (before, limit),
        )
        out: dict[str, list[str]] = {}
        for r in rows:
            out.setdefault(r["tenant_id"], []).append(r["thread_id"])
        return out


class StoreItems:
    """Rows of the long-term memory store; namespaces are stored joined by '.' as ``prefix``
    (langgraph forbids '.' inside namespace labels, so the join is unambiguous)."""

    def __init__(self, db: Storage) -> None:
        self.db = db

    async def put(
        self, tenant: str, prefix: str, key: str, value: dict[str, Any],
        ttl_minutes: float | None, expires_at: str | None,
    ) -> None:
        now = utcnow()
        await self.db.execute(
            "INSERT INTO store_items (tenant_id, prefix, key, value, created_at, updated_at,"
            " expires_at, ttl_minutes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, prefix, key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at, expires_at = excluded.expires_at,"
            " ttl_minutes = excluded.ttl_minutes",
            (tenant, prefix, key, dumps(value), now, now, expires_at, ttl_minutes),
        )

    async def get(self, tenant: str, prefix: str, key: str, now: str) -> dict[str, Any] | None:
        return await self.db.fetchone(
            "SELECT prefix, key, value, created_at, updated_at, expires_at, ttl_minutes"
            " FROM store_items WHERE tenant_id = ? AND prefix = ? AND key = ?"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (tenant, prefix, key, now),
        )

    async def touch(self, tenant: str, prefix: str, key: str, expires_at: str) -> None:
        await self.db.execute(
            "UPDATE store_items SET expires_at = ? WHERE tenant_id = ? AND prefix = ? AND key = ?",
            (expires_at, tenant, prefix, key),
        )

    async def delete(self, tenant: str, prefix: str, key: str) -> int:
        return await self.db.execute(
            "DELETE FROM store_items WHERE tenant_id = ? AND prefix = ? AND key = ?",
            (tenant, prefix, key),
        )

    async def under(self, tenant: str, prefix: str, now: str) -> list[dict[str, Any]]:
        """All live items whose namespace starts with ``prefix`` (all items if empty)."""
        clauses = ["tenant_id = ?", "(expires_at IS NULL OR expires_at > ?)"]
        params: list[Any] = [tenant, now]
        if prefix:
            # A case-sensitive prefix test in both dialects (SQLite's LIKE ignores case).
            clauses.append("(prefix = ? OR substr(prefix, 1, ?) = ?)")
            params.extend([prefix, len(prefix) + 1, prefix + "."])
        return await self.db.fetchall(
            "SELECT prefix, key, value, created_at, updated_at, expires_at, ttl_minutes"
            f" FROM store_items WHERE {' AND '.join(clauses)} ORDER BY updated_at DESC",
            params,
        )

    async def prefixes(self, tenant: str, now: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT DISTINCT prefix FROM store_items WHERE tenant_id = ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY prefix",
            (tenant, now),
        )
        return [r["prefix"] for r in rows]

    async def sweep(self, now: str) -> int:
        return await self.db.execute(
            "DELETE FROM store_items WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )
