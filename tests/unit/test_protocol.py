"""Thread protocol pieces: event filters and the normalisation of LangGraph's v3 events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langgraph.types import Interrupt

from dockyard.runtime.protocol import ProtocolPublisher, thread_channel
from dockyard.services.protocol import EventFilter, ProtocolError
from dockyard.streams.memory import InProcessBus


def name(channel: str, *ns: str) -> str:
    return channel + "\t" + "\t".join(ns)


def test_filter_channels_namespaces_and_depth() -> None:
    f = EventFilter.parse({"channels": ["values", "custom"]})
    assert f.matches(name("values")) and f.matches(name("values", "child:1"))
    assert f.matches(name("custom:progress"))  # "custom" covers every named custom channel
    assert not f.matches(name("messages"))
    named = EventFilter.parse({"channels": ["custom:progress"]})
    assert named.matches(name("custom:progress")) and not named.matches(name("custom:other"))
    scoped = EventFilter.parse({"channels": ["values"], "namespaces": [["child"]], "depth": 0})
    assert scoped.matches(name("values", "child:abc"))  # a prefix without ':' matches by name
    assert not scoped.matches(name("values"))
    assert not scoped.matches(name("values", "child:abc", "grand:1"))  # deeper than depth 0
    exact = EventFilter.parse({"channels": ["values"], "namespaces": [["child:abc"]]})
    assert exact.matches(name("values", "child:abc", "grand:1"))
    assert not exact.matches(name("values", "child:xyz"))
    root_only = EventFilter.parse({"channels": ["values"], "depth": 0})
    assert root_only.matches(name("values")) and not root_only.matches(name("values", "c:1"))


@pytest.mark.parametrize("params, message", [
    ({}, "channels is required"),
    ({"channels": []}, "channels is required"),
    ({"channels": ["nope"]}, "unsupported channel"),
    ({"channels": ["custom:"]}, "unsupported channel"),
    ({"channels": ["values"], "namespaces": "x"}, "namespaces must be"),
    ({"channels": ["values"], "depth": -1}, "depth must be"),
    ({"channels": ["values"], "depth": True}, "depth must be"),
    ({"channels": ["values"], "filter": 1}, "unknown subscription field"),
])
def test_filter_rejects_bad_input(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        EventFilter.parse(params)


async def published(bus: InProcessBus, tid: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    async for ev in bus.subscribe(thread_channel(tid)):
        out.append((ev.event, json.loads(ev.data)))
        if len(out) == await _count(bus, tid):
            break
    return out


async def _count(bus: InProcessBus, tid: str) -> int:
    ch = bus._channels[thread_channel(tid)]
    return len(ch.events)


async def test_publisher_normalises_v3_events() -> None:
    bus = InProcessBus()
    pub = ProtocolPublisher(bus, "t1", "r1", "agent")
    await pub.started()
    meta = {"langgraph_node": "reply", "langgraph_step": 1, "tags": ["x"]}
    child = ["child:42"]
    for ev in [
        # a token event comes with its metadata; a whole message is not a token stream
        {"method": "messages", "params": {"namespace": [], "data": [
            {"event": "message-start", "role": "ai", "id": "m1"}, meta]}},
        {"method": "messages", "params": {"namespace": [], "data": [AIMessage("whole"), meta]}},
        # a subgraph's lifecycle is reported at the root with the child inside data
        {"method": "lifecycle", "params": {"namespace": [], "data": {
            "event": "started", "namespace": child, "graph_name": "child"}}},
        {"method": "updates", "params": {"namespace": child, "data": {"inner": {"x": 1}}}},
        {"method": "updates", "params": {"namespace": [], "data": {"__interrupt__": [1]}}},
        {"method": "values", "params": {"namespace": [], "data": {"x": 1, "__interrupt__": []}}},
        {"method": "tools", "params": {"namespace": [], "data": {
            "event": "tool-started", "tool_call_id": "c1", "tool_name": "t", "__node": "tools"}}},
        {"method": "checkpoints", "params": {"namespace": [], "data": {
            "config": {"configurable": {"checkpoint_id": "cp2"}},
            "parent_config": {"configurable": {"checkpoint_id": "cp1"}},
            "metadata": {"step": 3, "source": "loop"}, "values": {"big": "state"}}}},
        {"method": "custom:progress", "params": {"namespace": [], "data": {"pct": 5}}},
        {"method": "debug", "params": {"namespace": [], "data": {}}},
    ]:
        await pub.feed(ev)
    await pub.finished("interrupted", interrupts=[([], Interrupt(value={"q": 1}, id="i1"))])
    got = await published(bus, "t1")
    methods = [(n.split("\t")[0], d["method"]) for n, d in got]
    assert methods == [
        ("lifecycle", "lifecycle"), ("messages", "messages"), ("lifecycle", "lifecycle"),
        ("updates", "updates"), ("values", "values"), ("tools", "tools"),
        ("checkpoints", "checkpoints"), ("custom:progress", "custom"),
        ("input", "input.requested"), ("lifecycle", "lifecycle"), ("lifecycle", "lifecycle"),
    ]
    p = [d["params"] for _, d in got]
    assert p[0]["data"] == {"event": "running", "graph_name": "agent", "run_id": "r1"}
    assert p[1]["data"] == {"event": "message-start", "role": "ai", "id": "m1",
                            "metadata": {"langgraph_node": "reply", "langgraph_step": 1}}
    assert p[2]["namespace"] == child and p[2]["data"]["event"] == "started"
    assert p[3] == {**p[3], "namespace": child, "node": "inner", "data": {"x": 1}}
    assert p[4]["data"] == {"x": 1}
    assert p[5]["node"] == "tools" and "__node" not in p[5]["data"]
    assert p[6]["data"] == {"id": "cp2", "parent_id": "cp1", "step": 3, "source": "loop"}
    assert p[7]["data"] == {"name": "progress", "payload": {"pct": 5}}
    assert p[8]["data"] == {"interrupt_id": "i1", "payload": {"q": 1}, "value": {"q": 1}}
    # the still-open subgraph ends with the run, then the root
    assert p[9]["namespace"] == child and p[9]["data"]["event"] == "interrupted"
    assert p[10]["namespace"] == [] and p[10]["data"]["event"] == "interrupted"


async def test_terminal_lifecycle_by_status() -> None:
    bus = InProcessBus()
    for status, expected in [("success", {"event": "completed"}),
                             ("error", {"event": "failed", "error": "boom"}),
                             ("cancelled", {"event": "failed", "error": "run cancelled"})]:
        tid = f"t-{status}"
        await ProtocolPublisher(bus, tid, "r", "g").finished(status, error="boom")
        [(_, data)] = await published(bus, tid)
        assert data["params"]["data"] == {**expected, "graph_name": "g", "run_id": "r"}


async def test_thread_channel_ids_grow_across_a_recreated_channel() -> None:
    bus = InProcessBus()
    ch = thread_channel("t")
    first = await bus.publish(ch, "x", b"{}")
    bus._drop(ch)  # dropped while idle, created again in the same millisecond
    second = await bus.publish(ch, "x", b"{}")
    assert bus.seq(second) > bus.seq(first)
    assert await bus.last_id(ch) == second
