"""A2A: `/a2a/{assistant_id}` and the agent cards, driven by the official `a2a-sdk` client.

The cards declare protocol 0.3.0 over JSON-RPC, so the SDK's client speaks `message/send`,
`message/stream`, `tasks/get` and `tasks/cancel` (its 0.3 compatibility transport).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.client.client import Client
from a2a.helpers.proto_helpers import get_artifact_text, new_data_message, new_text_message
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

pytestmark = pytest.mark.e2e


async def card_of(url: str, assistant_id: str) -> AgentCard:
    async with httpx.AsyncClient() as http:
        resolver = A2ACardResolver(http, url)
        return await resolver.get_agent_card(f"/.well-known/agent-card.json?assistant_id={assistant_id}")


@asynccontextmanager
async def a2a_client(url: str, assistant_id: str, *, streaming: bool = False) -> AsyncIterator[Client]:
    card = await card_of(url, assistant_id)
    client = ClientFactory(ClientConfig(streaming=streaming)).create(card)
    try:
        yield client
    finally:
        await client.close()


async def send(client: Client, message: Message, *, blocking: bool = True) -> list[StreamResponse]:
    request = SendMessageRequest(message=message)
    if not blocking:
        request.configuration.return_immediately = True
    return [event async for event in client.send_message(request)]


def user_text(text: str, **kw: Any) -> Message:
    return new_text_message(text, role=Role.ROLE_USER, **kw)


def user_data(data: dict[str, Any], **kw: Any) -> Message:
    return new_data_message(data, role=Role.ROLE_USER, **kw)


async def test_agent_card(url: str) -> None:
    card = await card_of(url, "chat")
    assert card.name == "chat"
    assert card.capabilities.streaming
    [iface] = card.supported_interfaces
    assert iface.protocol_binding == "JSONRPC" and iface.protocol_version == "0.3.0"
    assert iface.url.startswith(f"{url}/a2a/")
    assert card.skills[0].id == "chat-main"
    async with httpx.AsyncClient(base_url=url) as http:
        legacy = await http.get("/.well-known/agent.json", params={"assistant_id": "chat"})
        assert legacy.status_code == 200 and legacy.json()["name"] == "chat"
        missing = await http.get("/.well-known/agent-card.json")
        assert missing.status_code == 422
        unknown = await http.get("/.well-known/agent-card.json", params={"assistant_id": "nope"})
        assert unknown.status_code == 404


async def test_send_message_and_get_task(url: str) -> None:
    async with a2a_client(url, "chat") as client:
        [event] = await send(client, user_text("hello"))
        task = event.task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert get_artifact_text(task.artifacts[0]) == "hello there from the fake model"
        again = await client.get_task(GetTaskRequest(id=task.id))
        assert again.status.state == TaskState.TASK_STATE_COMPLETED
        assert again.context_id == task.context_id
        assert get_artifact_text(again.artifacts[0]) == "hello there from the fake model"
        # The same context continues the conversation on the same thread.
        [follow] = await send(client, user_text("and again", context_id=task.context_id))
        assert follow.task.context_id == task.context_id and follow.task.id != task.id
        with pytest.raises(TaskNotFoundError):
            await client.get_task(GetTaskRequest(id=str(uuid.uuid4())))
    async with httpx.AsyncClient() as http:
        thread = (await http.get(f"{url}/threads/{task.context_id}/state")).json()
    assert [m["type"] for m in thread["values"]["messages"]] == ["human", "ai", "human", "ai"]


async def test_structured_input_and_failure(url: str) -> None:
    async with a2a_client(url, "three_steps") as client:
        [done] = await send(client, user_data({"steps": ["x"]}))
        assert done.task.status.state == TaskState.TASK_STATE_COMPLETED
        assert '"steps":["x","a","b","c"]' in get_artifact_text(done.task.artifacts[0])
    async with a2a_client(url, "failing") as client:
        [failed] = await send(client, user_text("{}"))
        assert failed.task.status.state == TaskState.TASK_STATE_FAILED
        assert "node exploded on purpose" in failed.task.status.message.parts[0].text


async def test_stream_message(url: str) -> None:
    async with a2a_client(url, "chat", streaming=True) as client:
        events = await send(client, user_text("stream please"))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task"
    assert "artifact_update" in kinds
    last = events[-1].status_update
    assert kinds[-1] == "status_update" and last.status.state == TaskState.TASK_STATE_COMPLETED
    artifact = next(e.artifact_update for e in events if e.HasField("artifact_update"))
    assert get_artifact_text(artifact.artifact) == "hello there from the fake model"
    assert artifact.task_id == events[0].task.id


async def test_stream_outlasting_heartbeats(url: str) -> None:
    # The e2e server sends SSE heartbeat comments every 0.5 s; a run longer than that
    # interleaves them with the JSON-RPC events, which the client must skip.
    async with a2a_client(url, "slow", streaming=True) as client:
        events = await send(client, user_data({"delay": 1.2, "marker": "hb"}))
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    artifact = next(e.artifact_update for e in events if e.HasField("artifact_update"))
    assert "slept:hb" in get_artifact_text(artifact.artifact)


async def test_cancel_slow_task(url: str) -> None:
    async with a2a_client(url, "slow") as client:
        [event] = await send(client, user_data({"delay": 30, "marker": "a2a"}), blocking=False)
        task = event.task
        assert task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        fetched = await client.get_task(GetTaskRequest(id=task.id))
        assert fetched.status.state == TaskState.TASK_STATE_CANCELED
        with pytest.raises(TaskNotCancelableError):
            await client.cancel_task(CancelTaskRequest(id=task.id))


async def test_interrupt_asks_for_input_then_resumes(url: str) -> None:
    async with a2a_client(url, "approval") as client:
        [first] = await send(client, user_data({"steps": ["go"]}))
        task: Task = first.task
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert "approve?" in task.status.message.parts[0].text
        fetched = await client.get_task(GetTaskRequest(id=task.id))
        assert fetched.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        [second] = await send(client, user_text("yes", context_id=task.context_id))
    assert second.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert second.task.context_id == task.context_id
    text = get_artifact_text(second.task.artifacts[0])
    assert '"answer:yes"' in text and '"finish"' in text


async def test_concurrent_contexts_are_separate_threads(url: str) -> None:
    async with a2a_client(url, "chat") as client:
        results = await asyncio.gather(*(send(client, user_text(f"m{i}")) for i in range(3)))
    contexts = {r[0].task.context_id for r in results}
    assert len(contexts) == 3
