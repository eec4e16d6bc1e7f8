"""Threads: conversation state, its checkpoints, history, copies and time travel."""

from __future__ import annotations

from typing import Any

from langgraph.errors import InvalidUpdateError

from dockyard.errors import Conflict, InvalidInput, NotFound
from dockyard.runtime.loader import GraphRegistry
from dockyard.serde import to_jsonable
from dockyard.services.ids import check_uuid, new_id
from dockyard.storage.base import Storage
from dockyard.storage.queue import RunQueue
from dockyard.storage.resources import Threads

THREAD_STATUSES = ("idle", "busy", "interrupted", "error")


def public_thread(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "thread_id": row["thread_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "metadata": row["metadata"],
        "status": row["status"],
        "values": row["values"],
        "interrupts": row["interrupts"],
        "config": row.get("config") or {},
        "error": row.get("error"),
    }


def _checkpoint_ref(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    c = config.get("configurable", {})
    return {
        "thread_id": c.get("thread_id"),
        "checkpoint_ns": c.get("checkpoint_ns", ""),
        "checkpoint_id": c.get("checkpoint_id"),
        "checkpoint_map": c.get("checkpoint_map"),
    }


def snapshot_json(snap: Any) -> dict[str, Any]:
    """A LangGraph StateSnapshot in the Agent Server's ThreadState shape."""
    tasks = []
    for t in snap.tasks:
        tasks.append({
            "id": t.id,
            "name": t.name,
            "path": list(t.path) if getattr(t, "path", None) else [],
            "error": str(t.error) if t.error else None,
            "interrupts": to_jsonable(list(t.interrupts)),
            "checkpoint": _checkpoint_ref(t.state) if isinstance(t.state, dict) else None,
            "state": snapshot_json(t.state) if t.state is not None and not isinstance(t.state, dict)
            else None,
            "result": to_jsonable(getattr(t, "result", None)),
        })
    return {
        "values": to_jsonable(snap.values),
        "next": list(snap.next),
        "tasks": tasks,
        "metadata": to_jsonable(snap.metadata) if snap.metadata is not None else {},
        "created_at": snap.created_at,
        "checkpoint": _checkpoint_ref(snap.config),
        "parent_checkpoint": _checkpoint_ref(snap.parent_config),
        "interrupts": to_jsonable(list(snap.interrupts)),
        "checkpoint_id": (snap.config or {}).get("configurable", {}).get("checkpoint_id"),
        "parent_checkpoint_id": (snap.parent_config or {}).get("configurable", {}).get(
            "checkpoint_id"
        ),
    }


def empty_state(thread_id: str) -> dict[str, Any]:
    return {
        "values": {}, "next": [], "tasks": [], "metadata": {}, "created_at": None,
        "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None,
                       "checkpoint_map": None},
        "parent_checkpoint": None, "interrupts": [], "checkpoint_id": None,
        "parent_checkpoint_id": None,
    }


class ThreadService:
    def __init__(
        self, db: Storage, registry: GraphRegistry, store: Any
    ) -> None:
        self.db = db
        self.repo = Threads(db)
        self.queue = RunQueue(db)
        self.registry = registry
        self.store = store

    async def create(
        self, tenant: str, *, thread_id: str | None = None, metadata: dict[str, Any] | None = None,
        if_exists: str = "raise", graph_id: str | None = None,
    ) -> dict[str, Any]:
        if if_exists not in ("raise", "do_nothing"):
            raise InvalidInput("if_exists must be 'raise' or 'do_nothing'")
        tid = check_uuid(thread_id, "thread_id") if thread_id else new_id()
        meta = dict(metadata or {})
        if graph_id:
            meta.setdefault("graph_id", graph_id)
        row = await self.repo.insert(tenant, tid, meta)
        if row is None:
            existing = await self.repo.get(tenant, tid)
            if if_exists == "do_nothing" and existing is not None:
                return public_thread(existing)
            raise Conflict(f"Thread '{tid}' already exists", code="thread_exists")
        return public_thread(row)

    async def get_row(self, tenant: str, thread_id: str) -> dict[str, Any]:
        row = await self.repo.get(tenant, check_uuid(thread_id, "thread_id"))
        if row is None:
            raise NotFound(f"Thread '{thread_id}' not found", code="thread_not_found")
        return row

    async def get(self, tenant: str, thread_id: str) -> dict[str, Any]:
        return public_thread(await self.get_row(tenant, thread_id))

    async def patch(self, tenant: str, thread_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        row = await self.get_row(tenant, thread_id)
        await self.repo.update(tenant, row["thread_id"], metadata={**row["metadata"], **metadata})
        return await self.get(tenant, thread_id)

    async def delete(self, tenant: str, thread_id: str) -> None:
        row = await self.get_row(tenant, thread_id)
        await self.db.delete_checkpoints(row["thread_id"])
        await self.repo.delete(tenant, row["thread_id"])

    async def delete_for_assistant(self, tenant: str, assistant_id: str) -> int:
        """Delete the threads whose ``metadata.assistant_id`` is ``assistant_id``, with their runs
        and checkpoints (``DELETE /assistants/{id}?delete_threads=true``)."""
        n = 0
        while rows := await self.repo.search(tenant, metadata={"assistant_id": assistant_id},
                                             limit=100):
            for row in rows:
                await self.db.delete_checkpoints(row["thread_id"])
                await self.repo.delete(tenant, row["thread_id"])
                n += 1
        return n

    async def search(self, tenant: str, **kw: Any) -> list[dict[str, Any]]:
        status = kw.get("status")
        if status is not None and status not in THREAD_STATUSES:
            raise InvalidInput(f"status must be one of {list(THREAD_STATUSES)}")
        if kw.get("ids"):
            kw["ids"] = [check_uuid(i, "thread_id") for i in kw["ids"]]
        return [public_thread(r) for r in await self.repo.search(tenant, **kw)]

    async def count(self, tenant: str, **kw: Any) -> int:
        return await self.repo.count(tenant, **kw)

    async def copy(self, tenant: str, thread_id: str) -> dict[str, Any]:
        row = await self.get_row(tenant, thread_id)
        new = await self.create(tenant, metadata=row["metadata"])
        await self.db.copy_checkpoints(row["thread_id"], new["thread_id"])
        await self.repo.update(
            tenant, new["thread_id"], values=row["values"], interrupts=row["interrupts"],
            status="idle" if row["status"] == "busy" else row["status"],
        )
        return await self.get(tenant, new["thread_id"])

    async def prune(self, tenant: str, thread_ids: list[str], strategy: str) -> int:
        if strategy not in ("delete", "keep_latest"):
            raise InvalidInput("strategy must be 'delete' or 'keep_latest'")
        n = 0
        for tid in thread_ids:
            row = await self.repo.get(tenant, check_uuid(tid, "thread_id"))
            if row is None:
                continue
            if strategy == "delete":
                await self.db.delete_checkpoints(row["thread_id"])
                await self.repo.delete(tenant, row["thread_id"])
            else:
                await self.db.delete_checkpoints(row["thread_id"], keep_latest=True)
            n += 1
        return n

    # ---- state -------------------------------------------------------------------------
    async def _graph_for(self, row: dict[str, Any]) -> Any | None:
        graph_id = row["metadata"].get("graph_id")
        if not graph_id or graph_id not in self.registry.graph_ids:
            return None
        graph = await self.registry.get(graph_id, {"configurable": {"thread_id": row["thread_id"]}},
                                        access_context="threads.read", store=self.store)
        return graph.copy(update={"checkpointer": self.db.checkpointer, "store": self.store})

    @staticmethod
    def _config(thread_id: str, checkpoint: dict[str, Any] | None) -> dict[str, Any]:
        configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
        for key, value in (checkpoint or {}).items():
            if key == "thread_id" or value is None:
                continue
            if key not in ("checkpoint_id", "checkpoint_ns", "checkpoint_map"):
                raise InvalidInput(f"Unknown checkpoint field {key!r}")
            configurable[key] = value
        return {"configurable": configurable}

    async def state(
        self, tenant: str, thread_id: str, *, checkpoint: dict[str, Any] | None = None,
        subgraphs: bool = False,
    ) -> dict[str, Any]:
        row = await self.get_row(tenant, thread_id)
        config = self._config(row["thread_id"], checkpoint)
        graph = await self._graph_for(row)
        if graph is None:
            if checkpoint and checkpoint.get("checkpoint_id"):  # no graph ran: no checkpoints
                raise NotFound(f"Checkpoint '{checkpoint['checkpoint_id']}' not found",
                               code="checkpoint_not_found")
            return empty_state(row["thread_id"])
        snap = await graph.aget_state(config, subgraphs=subgraphs)
        # LangGraph answers an empty snapshot (no metadata, no timestamp) for a missing checkpoint.
        missing = snap.config is None or (snap.metadata is None and snap.created_at is None)
        if missing and checkpoint and checkpoint.get("checkpoint_id"):
            raise NotFound(f"Checkpoint '{checkpoint['checkpoint_id']}' not found",
                           code="checkpoint_not_found")
        if missing:
            return empty_state(row["thread_id"])
        return snapshot_json(snap)

    async def update_state(
        self, tenant: str, thread_id: str, *, values: Any, as_node: str | None,
        checkpoint: dict[str, Any] | None,
    ) -> dict[str, Any]:
        row = await self.get_row(tenant, thread_id)
        if await self.queue.active_for_thread(tenant, row["thread_id"]):
            raise Conflict("Thread is busy: wait for its runs to finish before updating state",
                           code="thread_busy")
        graph = await self._graph_for(row)
        if graph is None:
            raise Conflict(
                "Thread has no graph yet: run it once (or create it with a graph_id) before "
                "updating its state", code="thread_has_no_graph",
            )
        config = self._config(row["thread_id"], checkpoint)
        if config["configurable"].get("checkpoint_id") and (
            await self.db.checkpointer.aget_tuple(config) is None  # type: ignore[arg-type]
        ):  # LangGraph would fork from nothing: an unknown checkpoint is the caller's mistake
            raise NotFound(f"Checkpoint '{config['configurable']['checkpoint_id']}' not found",
                           code="checkpoint_not_found")
        try:
            new_config = await graph.aupdate_state(config, values, as_node=as_node)
        except (ValueError, KeyError, TypeError, InvalidUpdateError) as exc:
            raise InvalidInput(f"Cannot update state: {exc}") from exc
        snap = await graph.aget_state({"configurable": {"thread_id": row["thread_id"]}})
        await self.repo.update(
            tenant, row["thread_id"], values=to_jsonable(snap.values),
            status="interrupted" if snap.interrupts else "idle",
        )
        return {"checkpoint": _checkpoint_ref(new_config)}

    async def history(
        self, tenant: str, thread_id: str, *, limit: int = 10, before: Any = None,
        metadata: dict[str, Any] | None = None, checkpoint: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        if limit < 1 or limit > 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        row = await self.get_row(tenant, thread_id)
        graph = await self._graph_for(row)
        if graph is None:
            return []
        before_cfg = None
        if before:
            ref = before if isinstance(before, dict) else {"checkpoint_id": before}
            before_cfg = self._config(row["thread_id"], ref)
        out = []
        async for snap in graph.aget_state_history(
            self._config(row["thread_id"], checkpoint), limit=limit, before=before_cfg,
            filter=metadata or None,
        ):
            out.append(snapshot_json(snap))
        return out
