"""Assistants: versioned configurations of a graph; one default per graph at start-up."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from dockyard.errors import Conflict, InvalidInput, NotFound
from dockyard.runtime import introspect
from dockyard.runtime.loader import GraphRegistry
from dockyard.services.ids import check_uuid, default_assistant_id, is_uuid, new_id
from dockyard.storage.resources import Assistants


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "assistant_id": row["assistant_id"],
        "graph_id": row["graph_id"],
        "name": row["name"],
        "description": row.get("description"),
        "config": row["config"],
        "context": row["context"],
        "metadata": row["metadata"],
        "version": row["version"],
        "created_at": row["created_at"],
        "updated_at": row.get("updated_at", row["created_at"]),
    }


class AssistantService:
    def __init__(self, repo: Assistants, registry: GraphRegistry) -> None:
        self.repo = repo
        self.registry = registry

    async def ensure_defaults(self, tenant: str) -> None:
        for graph_id in self.registry.graph_ids:
            aid = default_assistant_id(graph_id, tenant)
            if await self.repo.get(tenant, aid) is None:
                spec = self.registry.spec(graph_id)
                # Replicas and workers starting together race to create it: one wins.
                with contextlib.suppress(Conflict):
                    await self.repo.insert(
                        tenant,
                        {
                            "assistant_id": aid, "graph_id": graph_id, "name": graph_id,
                            "description": spec.description, "config": {}, "context": {},
                            "metadata": {"created_by": "system"},
                        },
                    )

    def _check_graph(self, graph_id: str) -> None:
        if graph_id not in self.registry.graph_ids:
            raise NotFound(
                f"Graph '{graph_id}' not found; available graphs: {self.registry.graph_ids}",
                code="graph_not_found",
            )

    async def resolve(self, tenant: str, assistant_id: str) -> dict[str, Any]:
        """An assistant by id, or the default assistant of a graph given by its graph_id."""
        uuid = self.resolve_id(tenant, assistant_id)
        return self.found(uuid, await self.repo.get(tenant, uuid))

    def resolve_id(self, tenant: str, assistant_id: str) -> str:
        """The assistant's UUID (a graph id names its default assistant), without a read; the
        row then goes through ``found``."""
        if not is_uuid(assistant_id):
            if assistant_id in self.registry.graph_ids:
                assistant_id = default_assistant_id(assistant_id, tenant)
            else:
                raise NotFound(
                    f"Assistant '{assistant_id}' not found (not a UUID and not a graph id)",
                    code="assistant_not_found",
                )
        return check_uuid(assistant_id, "assistant_id")

    @staticmethod
    def found(assistant_id: str, row: dict[str, Any] | None) -> dict[str, Any]:
        if row is None:
            raise NotFound(f"Assistant '{assistant_id}' not found", code="assistant_not_found")
        return row

    async def get(self, tenant: str, assistant_id: str) -> dict[str, Any]:
        return _public(await self.resolve(tenant, assistant_id))

    async def create(
        self, tenant: str, *, graph_id: str, assistant_id: str | None = None,
        config: dict[str, Any] | None = None, context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None, if_exists: str = "raise",
        name: str | None = None, description: str | None = None,
    ) -> dict[str, Any]:
        self._check_graph(graph_id)
        if if_exists not in ("raise", "do_nothing"):
            raise InvalidInput("if_exists must be 'raise' or 'do_nothing'")
        aid = check_uuid(assistant_id, "assistant_id") if assistant_id else new_id()
        existing = await self.repo.get(tenant, aid)
        if existing is not None:
            if if_exists == "do_nothing":
                return _public(existing)
            raise Conflict(f"Assistant '{aid}' already exists", code="assistant_exists")
        row = await self.repo.insert(
            tenant,
            {
                "assistant_id": aid, "graph_id": graph_id, "name": name or "Untitled",
                "description": description, "config": config or {}, "context": context or {},
                "metadata": metadata or {},
            },
        )
        return _public(row)

    async def update(
        self, tenant: str, assistant_id: str, *, graph_id: str | None = None,
        config: dict[str, Any] | None = None, context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None, name: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        current = await self.resolve(tenant, assistant_id)
        if graph_id is not None:
            self._check_graph(graph_id)
        row = {
            "assistant_id": current["assistant_id"],
            "graph_id": graph_id or current["graph_id"],
            "name": name if name is not None else current["name"],
            "description": description if description is not None else current["description"],
            "config": config if config is not None else current["config"],
            "context": context if context is not None else current["context"],
            "metadata": {**current["metadata"], **(metadata or {})},
            "created_at": current["created_at"],
        }
        return _public(await self.repo.new_version(tenant, row))

    async def delete(self, tenant: str, assistant_id: str) -> str:
        """Delete an assistant and its versions; returns its id (``assistant_id`` may be a graph id)."""
        row = await self.resolve(tenant, assistant_id)
        await self.repo.delete(tenant, row["assistant_id"])
        return str(row["assistant_id"])

    async def search(self, tenant: str, **kw: Any) -> list[dict[str, Any]]:
        return [_public(r) for r in await self.repo.search(tenant, **kw)]

    async def count(self, tenant: str, **kw: Any) -> int:
        return await self.repo.count(tenant, **kw)

    async def versions(
        self, tenant: str, assistant_id: str, *, metadata: dict[str, Any] | None, limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        row = await self.resolve(tenant, assistant_id)
        return await self.repo.versions(
            tenant, row["assistant_id"], metadata=metadata, limit=limit, offset=offset
        )

    async def set_latest(self, tenant: str, assistant_id: str, version: int) -> dict[str, Any]:
        row = await self.resolve(tenant, assistant_id)
        v = await self.repo.get_version(tenant, row["assistant_id"], version)
        if v is None:
            raise NotFound(f"Assistant '{assistant_id}' has no version {version}")
        await self.repo.set_current(tenant, v, version)
        return await self.get(tenant, row["assistant_id"])

    async def _graph(self, tenant: str, assistant_id: str) -> tuple[dict[str, Any], Any]:
        row = await self.resolve(tenant, assistant_id)
        graph = await self.registry.get(
            row["graph_id"], {"configurable": row["config"].get("configurable", {}),
                              **{k: v for k, v in row["config"].items() if k != "configurable"}},
            access_context="assistants.read",
        )
        return row, graph

    async def graph(self, tenant: str, assistant_id: str, xray: bool | int) -> dict[str, Any]:
        _, graph = await self._graph(tenant, assistant_id)
        return await asyncio.to_thread(introspect.graph_json, graph, xray=xray)

    async def schemas(self, tenant: str, assistant_id: str) -> dict[str, Any]:
        row, graph = await self._graph(tenant, assistant_id)
        return await asyncio.to_thread(introspect.graph_schemas, graph, row["graph_id"])

    async def subgraphs(
        self, tenant: str, assistant_id: str, namespace: str | None, recurse: bool
    ) -> dict[str, Any]:
        row, graph = await self._graph(tenant, assistant_id)
        return await asyncio.to_thread(
            introspect.subgraph_schemas, graph, row["graph_id"], namespace=namespace,
            recurse=recurse,
        )
