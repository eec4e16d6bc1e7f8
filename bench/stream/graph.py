"""A token-streaming graph for bench/stream_bench.py: one node, one fake chat model that
streams TOKENS tokens (no network), so the server's streaming path is all that is measured."""

from __future__ import annotations

import os
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.graph import START, MessagesState, StateGraph

TOKENS = int(os.environ.get("BENCH_TOKENS", "1000"))
TEXT = " ".join(f"t{i}" for i in range((TOKENS + 1) // 2))  # words and spaces: TOKENS chunks


async def reply(state: MessagesState) -> dict[str, Any]:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=TEXT)]))
    return {"messages": [await model.ainvoke(state["messages"])]}


_g = StateGraph(MessagesState)
_g.add_node("reply", reply)
_g.add_edge(START, "reply")
graph = _g.compile()
