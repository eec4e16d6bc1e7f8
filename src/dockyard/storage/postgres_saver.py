"""The checkpointer of the PostgreSQL dialect: langgraph's ``AsyncPostgresSaver`` on our pool.

langgraph's saver does all the SQL. It serialises every call through one ``asyncio.Lock``,
which is needed when it shares a single connection but not when it draws from a pool: each
call then holds a connection of its own. With concurrent runs in one worker process that lock
would queue every checkpoint write behind every other, so this subclass takes it out of
``_cursor`` when (and only when) the saver is given a pool.
Checked with langgraph-checkpoint-conformance in tests/unit/test_checkpointer.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool


class PooledPostgresSaver(AsyncPostgresSaver):
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]]) -> None:
        super().__init__(pool)
        self.pool = pool

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        # As the parent's pool branch, without the saver-wide lock: the connection is ours.
        async with self.pool.connection() as conn:
            if pipeline and self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif pipeline:
                async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
