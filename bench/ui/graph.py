"""Graphs for bench/ui_bench.py: ``loop`` runs ``target`` steps on one thread, each adding a
small item (a thread with many checkpoints; a run with many steps)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph


class LoopState(TypedDict, total=False):
    items: Annotated[list[int], operator.add]
    target: int


def step(state: LoopState) -> dict[str, Any]:
    return {"items": [len(state.get("items", []))]}


def more(state: LoopState) -> str:
    return "step" if len(state.get("items", [])) < state.get("target", 10) else END


_g = StateGraph(LoopState)
_g.add_node("step", step)
_g.add_edge(START, "step")
_g.add_conditional_edges("step", more, ["step", END])
loop = _g.compile()
