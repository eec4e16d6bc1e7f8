"""Benchmark graphs: as little work per node as possible, so the server's overhead shows.

``graph3`` runs a → b → c; ``interrupt_graph`` runs a, stops at ``interrupt()`` in b, and
finishes with c once resumed. Both are compiled without a checkpointer (the server attaches
one); ``run_bench.py`` compiles ``builder`` / ``interrupt_builder`` itself for the in-process
floor.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    count: int
    answer: Any


def a(state: State) -> dict[str, Any]:
    return {"steps": ["a"], "count": state.get("count", 0) + 1}


def b(state: State) -> dict[str, Any]:
    return {"steps": ["b"], "count": state.get("count", 0) + 1}


def c(state: State) -> dict[str, Any]:
    return {"steps": ["c"], "count": state.get("count", 0) + 1}


def ask(state: State) -> dict[str, Any]:
    answer = interrupt({"question": "continue?", "count": state.get("count", 0)})
    return {"steps": ["b"], "count": state.get("count", 0) + 1, "answer": answer}


def _chain(middle: Any) -> StateGraph:
    builder = StateGraph(State)
    builder.add_node("a", a)
    builder.add_node("b", middle)
    builder.add_node("c", c)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder


builder = _chain(b)
interrupt_builder = _chain(ask)
graph = builder.compile()
interrupt_graph = interrupt_builder.compile()
