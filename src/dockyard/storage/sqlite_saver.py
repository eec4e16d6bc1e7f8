"""The checkpointer of the SQLite dialect: langgraph's ``SqliteSaver`` driven from the loop.

langgraph's ``SqliteSaver`` does the SQL; this subclass only adds its async methods by calling
the sync ones directly on the event loop. On a local WAL file with ``synchronous=NORMAL`` each
statement takes microseconds, far less than the thread hop per statement that ``aiosqlite``
costs, and running on the loop makes every statement atomic with respect to other tasks.
Iterators are materialised before yielding so no lock is held across an ``await``.

The connection is shared with Dockyard's own tables, whose transactions (BEGIN IMMEDIATE …
COMMIT) run on the loop. A sync call from another thread (a sync node invoking a subgraph, which
inherits this checkpointer, runs in a worker thread) would otherwise run its statements, and
its COMMIT, in the middle of such a transaction. So every sync method called off the loop's
thread is handed to the loop and waited for: the loop runs it between two tasks' steps, as it
runs the async ones.
Checked with langgraph-checkpoint-conformance in tests/unit/test_checkpointer.py.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

T = TypeVar("T")


class LoopSqliteSaver(SqliteSaver):
    _loop: asyncio.AbstractEventLoop | None = None
    _loop_thread: int | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that owns the connection (set when the storage opens on it)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()

    def _on_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = self._loop
        if (loop is None or threading.get_ident() == self._loop_thread or loop.is_closed()
                or not loop.is_running()):
            return fn(*args, **kwargs)

        async def call() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._on_loop(super().get_tuple, config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        parent = super().list
        return iter(self._on_loop(
            lambda: list(parent(config, filter=filter, before=before, limit=limit))))

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._on_loop(super().put, config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._on_loop(super().put_writes, config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self._on_loop(super().delete_thread, thread_id)

    def get_delta_channel_history(self, *args: Any, **kwargs: Any) -> Any:
        return self._on_loop(super().get_delta_channel_history, *args, **kwargs)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self.get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for item in list(self.list(config, filter=filter, before=before, limit=limit)):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self.put_writes(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        self.delete_thread(thread_id)

    async def aget_delta_channel_history(self, *args: Any, **kwargs: Any) -> Any:
        return self.get_delta_channel_history(*args, **kwargs)
