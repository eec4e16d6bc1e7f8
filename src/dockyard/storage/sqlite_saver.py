"""The checkpointer of the SQLite dialect: langgraph's ``SqliteSaver`` driven from the loop.

langgraph's ``SqliteSaver`` does the SQL; this subclass only adds its async methods by calling
the sync ones directly on the event loop. On a local WAL file with ``synchronous=NORMAL`` each
statement takes microseconds, far less than the thread hop per statement that ``aiosqlite``
costs, and running on the loop makes every statement atomic with respect to other tasks.
Iterators are materialised before yielding so no lock is held across an ``await``.
Checked with langgraph-checkpoint-conformance in tests/unit/test_checkpointer.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver


class LoopSqliteSaver(SqliteSaver):
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
