"""MCP (Model Context Protocol) server side: every assistant is a tool.

Stateless Streamable HTTP, as the reference Agent Server serves it: each POST carries one
JSON-RPC message and gets one JSON answer, no session is kept (``Mcp-Session-Id`` is neither
issued nor required) and the server never sends requests of its own. ``tools/call`` runs the
assistant as a stateless run through `RunService` (queue, tenancy, assistant versions apply)
and answers with the run's output as JSON text; a run that fails answers ``isError``.
"""

from __future__ import annotations

import re
from typing import Any

from dockyard.errors import DockyardError
from dockyard.serde import json_dumps
from dockyard.services.assistants import AssistantService
from dockyard.services.jsonrpc import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    RpcError,
    RpcRequest,
)
from dockyard.services.runs import RunService

# Revisions reachable by the ``initialize`` handshake, oldest first. A client asking for one of
# them gets it; any other request gets the newest (the client then decides whether to go on).
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_PROTOCOL_VERSION = PROTOCOL_VERSIONS[-1]
# Tool names the spec recommends: 1-128 characters of [A-Za-z0-9_.-].
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_TOOLS = 1000


def tool_name(name: str) -> str:
    return _NAME_UNSAFE.sub("_", name)[:128] or "assistant"


class McpService:
    def __init__(self, assistants: AssistantService, runs: RunService, *, version: str) -> None:
        self.assistants = assistants
        self.runs = runs
        self.version = version

    async def handle(self, tenant: str, req: RpcRequest) -> Any:
        """The ``result`` of one request (None for a notification); raises `RpcError`."""
        if req.is_notification:
            return None  # notifications/initialized, cancelled, …: nothing to do when stateless
        match req.method:
            case "initialize":
                return self.initialize(req.params)
            case "ping":
                return {}
            case "tools/list":
                return {"tools": await self.list_tools(tenant)}
            case "tools/call":
                return await self.call_tool(tenant, req.params)
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {req.method}")

    def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        if not isinstance(asked, str):
            raise RpcError(INVALID_PARAMS, "Invalid params: 'protocolVersion' must be a string")
        version = asked if asked in PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "dockyard", "version": self.version},
            "instructions": "Each tool runs one Dockyard assistant (a LangGraph graph) once, "
                            "statelessly, and returns its output as JSON.",
        }

    async def _tools(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Tool name → assistant; names are the assistants' names (graph ids for the default
        assistants), made safe; a repeated name falls back to the assistant's id."""
        rows = await self.assistants.search(tenant, limit=MAX_TOOLS, sort_by="created_at",
                                            sort_order="asc")
        tools: dict[str, dict[str, Any]] = {}
        for row in rows:
            name = tool_name(row["name"] or row["graph_id"])
            if name in tools:
                name = row["assistant_id"]
            tools[name] = row
        return tools

    async def list_tools(self, tenant: str) -> list[dict[str, Any]]:
        out = []
        for name, row in (await self._tools(tenant)).items():
            out.append({
                "name": name,
                "description": row.get("description") or f"Run the '{row['graph_id']}' agent",
                "inputSchema": await self._input_schema(tenant, row["assistant_id"]),
            })
        return out

    async def _input_schema(self, tenant: str, assistant_id: str) -> dict[str, Any]:
        try:
            schema = (await self.assistants.schemas(tenant, assistant_id)).get("input_schema")
        except DockyardError:
            schema = None  # a graph whose schema cannot be derived still gets listed
        if not isinstance(schema, dict) or schema.get("type") not in (None, "object"):
            return {"type": "object"}
        return {**schema, "type": "object"}

    async def call_tool(self, tenant: str, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise RpcError(INVALID_PARAMS, "Invalid params: 'name' must be a non-empty string")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: 'arguments' must be an object")
        row = (await self._tools(tenant)).get(name)
        if row is None:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name}")
        try:
            run = await self.runs.create(
                tenant, None, {"assistant_id": row["assistant_id"], "input": arguments,
                               "metadata": {"source": "mcp"}},
            )
            output = await self.runs.result(tenant, run)
        except DockyardError as exc:  # refused input, a full queue: the tool failed, not MCP
            return _tool_error(f"{exc.code}: {exc.message}")
        if isinstance(output, dict) and "__error__" in output:
            err = output["__error__"] or {}
            return _tool_error(f"{err.get('error')}: {err.get('message')}")
        return {"content": [{"type": "text", "text": json_dumps(output).decode()}],
                "isError": False}


def _tool_error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


__all__ = ["INVALID_REQUEST", "LATEST_PROTOCOL_VERSION", "PROTOCOL_VERSIONS", "McpService"]
