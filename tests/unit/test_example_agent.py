"""The support_triage example runs end to end in-process, with the scripted model."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

AGENT_PATH = Path(__file__).resolve().parents[2] / "examples" / "support_triage" / "agent.py"
BILLING_TICKET = "I was charged twice on my invoice! My email is alice@example.com."
TECH_TICKET = "Login fails with error 500 whenever I try, any question of a fix?"


@pytest.fixture(scope="module")
def agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("support_triage_agent", AGENT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def graph(agent: ModuleType) -> CompiledStateGraph:
    return agent.make_builder(agent.ScriptedChatModel()).compile(checkpointer=InMemorySaver())


def _config() -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


def _ticket(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def _run_to_interrupt(graph: CompiledStateGraph, config: dict[str, Any], text: str) -> Any:
    result = await graph.ainvoke(_ticket(text), config)
    interrupts = result["__interrupt__"]
    assert len(interrupts) == 1
    return interrupts[0].value


async def test_classify_tool_draft_interrupt_then_approve(graph: CompiledStateGraph) -> None:
    config = _config()
    question = await _run_to_interrupt(graph, config, BILLING_TICKET)

    state = await graph.aget_state(config)
    assert state.next == ("human_review",)
    assert state.values["category"] == "billing"
    assert state.values["priority"] == "high"
    tool_call_msg, tool_msg = state.values["messages"][1:3]
    assert isinstance(tool_call_msg, AIMessage)
    assert tool_call_msg.tool_calls[0]["name"] == "lookup_account"
    assert tool_call_msg.tool_calls[0]["args"] == {"email": "alice@example.com"}
    assert isinstance(tool_msg, ToolMessage)
    assert '"plan": "Pro"' in tool_msg.content
    assert question["question"] == "Send this reply?"
    assert question["draft"] == state.values["draft_reply"]
    assert question["draft"].startswith("Hi Alice,")
    assert "$49.00" in question["draft"]

    final = await graph.ainvoke(Command(resume={"approved": True}), config)
    assert "__interrupt__" not in final
    assert final["approved"] is True
    assert final["final_reply"] == question["draft"]
    assert final["messages"][-1].content == question["draft"]
    assert [m.type for m in final["messages"]] == ["human", "ai", "tool", "ai"]
    assert (await graph.aget_state(config)).next == ()


async def test_rejected_with_edit_sends_the_edit(graph: CompiledStateGraph) -> None:
    config = _config()
    await _run_to_interrupt(graph, config, BILLING_TICKET)
    edited = "Hi Alice, refund issued today. Sorry for the trouble!"

    final = await graph.ainvoke(Command(resume={"approved": False, "edited_reply": edited}), config)
    assert final["approved"] is False
    assert final["final_reply"] == edited
    assert final["messages"][-1].content == edited


async def test_rejected_without_edit_sends_nothing(graph: CompiledStateGraph) -> None:
    config = _config()
    await _run_to_interrupt(graph, config, BILLING_TICKET)

    final = await graph.ainvoke(Command(resume={"approved": False}), config)
    assert final["approved"] is False
    assert final["final_reply"] is None
    assert [m.type for m in final["messages"]] == ["human", "ai", "tool"]


async def test_ticket_without_email_searches_the_knowledge_base(
    graph: CompiledStateGraph,
) -> None:
    config = _config()
    question = await _run_to_interrupt(graph, config, TECH_TICKET)
    assert question["category"] == "technical"
    assert question["priority"] == "low"
    assert "KB-202" in question["draft"]

    final = await graph.ainvoke(Command(resume=True), config)
    assert final["final_reply"] == question["draft"]


async def test_messages_stream_yields_tokens_one_by_one(graph: CompiledStateGraph) -> None:
    chunks: list[tuple[AIMessageChunk, dict[str, Any]]] = []
    async for message, metadata in graph.astream(
        _ticket(BILLING_TICKET), _config(), stream_mode="messages"
    ):
        if isinstance(message, AIMessageChunk):
            chunks.append((message, metadata))

    draft_tokens = [m.content for m, meta in chunks if meta["langgraph_node"] == "draft"]
    assert len([t for t in draft_tokens if t]) > 10
    tool_chunks = [m for m, _ in chunks if m.tool_call_chunks]
    assert tool_chunks[0].tool_call_chunks[0]["name"] == "lookup_account"
    assert len({m.id for m, meta in chunks if meta["langgraph_node"] == "classify"}) == 1


def test_module_graph_has_no_checkpointer_and_scripted_model_by_default(
    agent: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert agent.graph.checkpointer is None
    assert set(agent.graph.nodes) >= {"classify", "draft", "tools", "human_review", "send_reply"}
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("DOCKYARD_EXAMPLE_TOKEN_DELAY", "0")
    model = agent.make_model()
    assert isinstance(model, agent.ScriptedChatModel)
    assert model.token_delay == 0
