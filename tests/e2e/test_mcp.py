"""MCP: `/mcp` (Streamable HTTP, stateless) driven by the official `mcp` Python client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(f"{url}/mcp") as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def test_initialize_and_list_tools(url: str) -> None:
    async with streamable_http_client(f"{url}/mcp") as (read, write), \
            ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name == "dockyard"
        assert init.capabilities.tools is not None
        tools = {t.name: t for t in (await session.list_tools()).tools}
        await session.send_ping()
    assert {"three_steps", "chat", "approval", "slow"} <= set(tools)
    assert tools["three_steps"].input_schema["type"] == "object"
    assert "steps" in tools["three_steps"].input_schema["properties"]
    assert "messages" in tools["chat"].input_schema["properties"]


async def test_call_tools(url: str) -> None:
    async with mcp_session(url) as session:
        steps = await session.call_tool("three_steps", {"steps": ["start"]})
        chat = await session.call_tool(
            "chat", {"messages": [{"role": "user", "content": "hi"}]}
        )
    assert not steps.is_error
    assert json.loads(steps.content[0].text) == {"steps": ["start", "a", "b", "c"]}
    assert not chat.is_error
    output = json.loads(chat.content[0].text)
    assert output["messages"][-1]["content"] == "hello there from the fake model"


async def test_failing_tool_and_unknown_tool(url: str) -> None:
    async with mcp_session(url) as session:
        failed = await session.call_tool("failing", {})
        assert failed.is_error
        assert "node exploded on purpose" in failed.content[0].text
        with pytest.raises(MCPError) as info:
            await session.call_tool("no_such_agent", {})
    assert info.value.error.code == -32602


async def test_http_edges(url: str) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        # Notifications and a client's responses are accepted without an answer.
        note = await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert note.status_code == 202 and note.content == b""
        # No server-initiated stream, no session to delete.
        assert (await http.get("/mcp")).status_code == 405
        assert (await http.delete("/mcp")).status_code == 405
        # An unknown protocol revision in the header is refused with 400.
        bad = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              headers={"MCP-Protocol-Version": "1999-01-01"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32600
        # A client asking for an old revision gets it; an unknown one gets the newest.
        for asked, got in (("2025-03-26", "2025-03-26"), ("2099-01-01", "2025-11-25")):
            init = await http.post("/mcp", json={
                "jsonrpc": "2.0", "id": 2, "method": "initialize",
                "params": {"protocolVersion": asked, "capabilities": {},
                           "clientInfo": {"name": "t", "version": "0"}},
            })
            assert init.json()["result"]["protocolVersion"] == got
