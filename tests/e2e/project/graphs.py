"""Graphs served by the end-to-end tests (one file, every kind Dockyard loads)."""

from __future__ import annotations

import asyncio
import operator
import os
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.config import get_store, get_stream_writer
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import interrupt


class Steps(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    delay: float
    marker: str


def _step(name: str) -> Any:
    def node(state: Steps) -> dict[str, Any]:
        return {"steps": [name]}

    node.__name__ = name
    return node


def _chain(*names: str) -> Any:
    g = StateGraph(Steps)
    prev = START
    for n in names:
        g.add_node(n, _step(n))
        g.add_edge(prev, n)
        prev = n
    g.add_edge(prev, END)
    return g


three_steps = _chain("a", "b", "c").compile()


def _ask(state: Steps) -> dict[str, Any]:
    answer = interrupt({"question": "approve?", "steps": state.get("steps", [])})
    return {"steps": [f"answer:{answer}"]}


_approval = StateGraph(Steps)
_approval.add_node("prepare", _step("prepare"))
_approval.add_node("ask", _ask)
_approval.add_node("finish", _step("finish"))
_approval.add_edge(START, "prepare")
_approval.add_edge("prepare", "ask")
_approval.add_edge("ask", "finish")
_approval.add_edge("finish", END)
approval = _approval.compile()


def _boom(state: Steps) -> dict[str, Any]:
    raise ValueError("node exploded on purpose")


_failing = StateGraph(Steps)
_failing.add_node("ok", _step("ok"))
_failing.add_node("boom", _boom)
_failing.add_edge(START, "ok")
_failing.add_edge("ok", "boom")
_failing.add_edge("boom", END)
failing = _failing.compile()


async def _sleepy(state: Steps) -> dict[str, Any]:
    writer = get_stream_writer()
    delay = float(state.get("delay", 2.0))
    end = time.monotonic() + delay
    while time.monotonic() < end:
        writer({"tick": round(end - time.monotonic(), 2)})
        await asyncio.sleep(0.05)
    return {"steps": [f"slept:{state.get('marker', '')}"]}


_slow = StateGraph(Steps)
_slow.add_node("first", _step("first"))
_slow.add_node("sleepy", _sleepy)
_slow.add_edge(START, "first")
_slow.add_edge("first", "sleepy")
_slow.add_edge("sleepy", END)
slow = _slow.compile()


def _model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content="hello there from the fake model")] * 1000))


async def _reply(state: MessagesState) -> dict[str, Any]:
    msg = await _model().ainvoke(state["messages"])
    return {"messages": [msg]}


_chat = StateGraph(MessagesState)
_chat.add_node("reply", _reply)
_chat.add_edge(START, "reply")
_chat.add_edge("reply", END)
chat = _chat.compile()

_inner = _chain("inner_1", "inner_2").compile()
_nested = StateGraph(Steps)
_nested.add_node("outer", _step("outer"))
_nested.add_node("child", _inner)
_nested.add_edge(START, "outer")
_nested.add_edge("outer", "child")
_nested.add_edge("child", END)
nested = _nested.compile()


async def _remember(state: Steps) -> dict[str, Any]:
    store = get_store()
    await store.aput(("memories", "e2e"), "last", {"steps": state.get("steps", [])})
    item = await store.aget(("memories", "e2e"), "last")
    return {"steps": [f"stored:{len(item.value['steps']) if item else -1}"]}


_memory = StateGraph(Steps)
_memory.add_node("remember", _remember)
_memory.add_edge(START, "remember")
_memory.add_edge("remember", END)
memory = _memory.compile()


@task
def _double(x: int) -> int:
    return x * 2


@entrypoint()
def functional(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"doubled": _double(inputs["x"]).result()}


async def plain_agent(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"echo": inputs.get("text", ""), "env": os.environ.get("DOCKYARD_E2E")}


def make_graph(config: dict[str, Any]) -> Any:
    suffix = config.get("configurable", {}).get("suffix", "plain")
    return _chain(f"made_{suffix}").compile()


# `crashable`: each node appends its name to a log file before and after its work, so a test
# can kill the server mid-run and check which nodes ran (and how often) after the restart.
def _logged(name: str, pause: float) -> Any:
    async def node(state: Steps) -> dict[str, Any]:
        log = Path(os.environ["DOCKYARD_E2E_LOG"]) if os.environ.get("DOCKYARD_E2E_LOG") else None
        if log:
            with log.open("a") as f:
                f.write(f"start {name}\n")
        await asyncio.sleep(pause)
        if log:
            with log.open("a") as f:
                f.write(f"end {name}\n")
        return {"steps": [name]}

    node.__name__ = name
    return node


_crash = StateGraph(Steps)
for _n in ("c1", "c2", "c3", "c4"):
    _crash.add_node(_n, _logged(_n, 0.6))
_crash.add_edge(START, "c1")
_crash.add_edge("c1", "c2")
_crash.add_edge("c2", "c3")
_crash.add_edge("c3", "c4")
_crash.add_edge("c4", END)
crashable = _crash.compile()

# `crashable_slow`: the same chain with 1.5 s nodes, so a graceful shutdown's short grace period
# always ends in the middle of a node.
_crash_slow = StateGraph(Steps)
for _n in ("s1", "s2", "s3"):
    _crash_slow.add_node(_n, _logged(_n, 1.5))
_crash_slow.add_edge(START, "s1")
_crash_slow.add_edge("s1", "s2")
_crash_slow.add_edge("s2", "s3")
_crash_slow.add_edge("s3", END)
crashable_slow = _crash_slow.compile()

# `ledger`: three short nodes that record "<run_id> <node>" when they finish, for the
# PostgreSQL-restart chaos test (which runs many of them at once).
def _ledger_node(name: str) -> Any:
    async def node(state: Steps) -> dict[str, Any]:
        from langgraph.config import get_config

        await asyncio.sleep(0.15)
        log = os.environ.get("DOCKYARD_E2E_LOG")
        if log:
            run_id = get_config()["configurable"].get("run_id")
            with Path(log).open("a") as f:
                f.write(f"{run_id} {name}\n")
        return {"steps": [name]}

    node.__name__ = name
    return node


_ledger = StateGraph(Steps)
for _n in ("l1", "l2", "l3"):
    _ledger.add_node(_n, _ledger_node(_n))
_ledger.add_edge(START, "l1")
_ledger.add_edge("l1", "l2")
_ledger.add_edge("l2", "l3")
_ledger.add_edge("l3", END)
ledger = _ledger.compile()


class DeltaSteps(TypedDict, total=False):
    # LangGraph's DeltaChannel (beta): checkpoints store each step's writes, not the whole list.
    steps: Annotated[list[str], DeltaChannel(lambda state, writes: state + [x for w in writes for x in w],
                                              snapshot_frequency=3)]
    target: int


def _delta_step(state: DeltaSteps) -> dict[str, Any]:
    return {"steps": [f"s{len(state.get('steps', []))}"]}


def _delta_more(state: DeltaSteps) -> str:
    return "step" if len(state.get("steps", [])) < state.get("target", 3) else END


_delta = StateGraph(DeltaSteps)
_delta.add_node("step", _delta_step)
_delta.add_edge(START, "step")
_delta.add_conditional_edges("step", _delta_more, ["step", END])
delta = _delta.compile()


# `blocking`: one synchronous node that sleeps for ``seconds`` in a thread (Python cannot stop
# it), for the tests of a server or worker that must exit after its stop all the same.
def _block(state: dict[str, Any]) -> dict[str, Any]:
    import time

    time.sleep(float(state.get("seconds", 0)))
    return {"seconds": 0}


class _Blocking(TypedDict, total=False):
    seconds: float


_blocking = StateGraph(_Blocking)
_blocking.add_node("block", _block)
_blocking.add_edge(START, "block")
blocking = _blocking.compile()
