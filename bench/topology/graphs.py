"""Graphs of the topology benchmark (``bench/topology_bench.py``); ``graph3`` comes from
``../graph3``.

``slow_chain`` runs s1 → … → s6, each node sleeping ``pause`` seconds (default 0.5), so a worker
can be killed in the middle of a run. ``growing`` appends one 2 KB message per step until the
state holds ``target`` messages (default 300): the checkpoint-cost workload, whose state is a
list that grows by one message a step. ``growing_delta`` is the same with the list in
LangGraph's ``DeltaChannel``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import _messages_delta_reducer, add_messages

MESSAGE_CHARS = 2048
CHAIN = ("s1", "s2", "s3", "s4", "s5", "s6")


class ChainState(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    pause: float


def _chain_node(name: str) -> Any:
    async def node(state: ChainState) -> dict[str, Any]:
        await asyncio.sleep(state.get("pause", 0.5))
        return {"steps": [name]}

    node.__name__ = name
    return node


_chain = StateGraph(ChainState)
for _name in CHAIN:
    _chain.add_node(_name, _chain_node(_name))
_chain.add_edge(START, CHAIN[0])
for _a, _b in itertools.pairwise(CHAIN):
    _chain.add_edge(_a, _b)
_chain.add_edge(CHAIN[-1], END)
slow_chain = _chain.compile()


class GrowingState(TypedDict, total=False):
    messages: Annotated[list[Any], add_messages]
    target: int


def message_text(n: int) -> str:
    """2,048 characters that do not compress (hex of a hash chain), distinct for each ``n``."""
    out, digest = [], str(n).encode()
    while sum(map(len, out)) < MESSAGE_CHARS:
        digest = hashlib.sha256(digest).digest()
        out.append(digest.hex())
    return "".join(out)[:MESSAGE_CHARS]


def grow(state: GrowingState) -> dict[str, Any]:
    n = len(state.get("messages", []))
    return {"messages": [AIMessage(content=message_text(n), id=f"m{n}")]}


def more(state: GrowingState) -> str:
    return "grow" if len(state.get("messages", [])) < state.get("target", 300) else END


_growing = StateGraph(GrowingState)
_growing.add_node("grow", grow)
_growing.add_edge(START, "grow")
_growing.add_conditional_edges("grow", more, ["grow", END])
growing_builder = _growing
growing = _growing.compile()


class GrowingDeltaState(TypedDict, total=False):
    # LangGraph's DeltaChannel (beta): checkpoints store the step's writes, not the whole list
    # again; a snapshot every 100 updates bounds the replay on read. Opt-in, per state key.
    messages: Annotated[list[Any], DeltaChannel(_messages_delta_reducer)]
    target: int


def grow_delta(state: GrowingDeltaState) -> dict[str, Any]:
    return grow(state)  # type: ignore[arg-type]  # same keys; its own annotation for the graph


def more_delta(state: GrowingDeltaState) -> str:
    return more(state)  # type: ignore[arg-type]


_growing_delta = StateGraph(GrowingDeltaState)
_growing_delta.add_node("grow", grow_delta)
_growing_delta.add_edge(START, "grow")
_growing_delta.add_conditional_edges("grow", more_delta, ["grow", END])
growing_delta = _growing_delta.compile()
