"""Streaming through langgraph-sdk: every stream mode, several at once, subgraphs, errors,
joining a run's stream (with Last-Event-ID resumption) and cancel-on-disconnect."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

CHAT_INPUT = {"messages": [{"role": "user", "content": "hi"}]}
FULL_REPLY = "hello there from the fake model"


async def _collect(client: Any, graph: str, inp: Any, **kw: Any) -> tuple[str, list[Any]]:
    thread = await client.threads.create()
    parts = [p async for p in client.runs.stream(thread["thread_id"], graph, input=inp, **kw)]
    return thread["thread_id"], parts


def _events(parts: list[Any]) -> list[str]:
    return [p.event for p in parts]


def _of(parts: list[Any], event: str) -> list[Any]:
    return [p.data for p in parts if p.event == event]


async def _wait_status(client: Any, thread_id: str, run_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        run = await client.runs.get(thread_id, run_id)
        if run["status"] in statuses:
            return run  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {statuses}")


# ---- framing ----------------------------------------------------------------------------
async def test_values_stream_starts_with_metadata_and_ends_with_end(client: Any) -> None:
    thread_id, parts = await _collect(client, "three_steps", {"steps": []}, stream_mode="values")
    assert parts[0].event == "metadata"
    run_id = parts[0].data["run_id"]
    runs = await client.runs.list(thread_id)
    assert [r["run_id"] for r in runs] == [run_id]
    # The v1 SDK stream yields the server's closing `end` event as it is.
    assert parts[-1].event == "end"
    assert _events(parts)[1:-1] == ["values"] * 4
    assert _of(parts, "values") == [
        {"steps": []}, {"steps": ["a"]}, {"steps": ["a", "b"]}, {"steps": ["a", "b", "c"]}
    ]
    ids = [int(p.id) for p in parts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_v2_stream_hides_end_and_splits_namespaces(client: Any) -> None:
    thread = await client.threads.create()
    parts = [p async for p in client.runs.stream(
        thread["thread_id"], "nested", input={"steps": []}, stream_mode="updates",
        stream_subgraphs=True, version="v2",
    )]
    assert [p["type"] for p in parts] == ["metadata", "updates", "updates", "updates", "updates"]
    namespaces = [tuple(p["ns"]) for p in parts[1:]]
    assert namespaces[0] == () and namespaces[-1] == ()
    assert all(len(ns) == 1 and ns[0].startswith("child:") for ns in namespaces[1:3])


def test_sync_client_stream(sync_client: Any) -> None:
    thread = sync_client.threads.create()
    parts = list(sync_client.runs.stream(
        thread["thread_id"], "three_steps", input={"steps": []}, stream_mode="updates"
    ))
    assert _events(parts) == ["metadata", "updates", "updates", "updates", "end"]
    assert [next(iter(u)) for u in _of(parts, "updates")] == ["a", "b", "c"]


# ---- one mode at a time -----------------------------------------------------------------
async def test_updates_mode(client: Any) -> None:
    _, parts = await _collect(client, "three_steps", {"steps": ["x"]}, stream_mode="updates")
    assert _of(parts, "updates") == [{"a": {"steps": ["a"]}}, {"b": {"steps": ["b"]}},
                                     {"c": {"steps": ["c"]}}]


async def test_messages_mode_accumulates_partials_then_completes(client: Any) -> None:
    _, parts = await _collect(client, "chat", CHAT_INPUT, stream_mode="messages")
    kinds = [e for e in _events(parts) if e.startswith("messages/")]
    assert kinds[0] == "messages/metadata"
    assert kinds[-1] == "messages/complete"
    assert kinds.count("messages/metadata") == 1
    partials = _of(parts, "messages/partial")
    assert len(partials) > 3
    contents = [p[0]["content"] for p in partials]
    # Each partial holds the whole message so far, not just the new token.
    assert all(b.startswith(a) for a, b in itertools.pairwise(contents))
    assert contents[-1] == FULL_REPLY
    (meta,) = _of(parts, "messages/metadata")
    msg_id = partials[0][0]["id"]
    assert meta[msg_id]["metadata"]["langgraph_node"] == "reply"
    (complete,) = _of(parts, "messages/complete")
    assert complete[0]["id"] == msg_id
    assert complete[0]["content"] == FULL_REPLY
    assert complete[0]["type"] == "ai"


async def test_messages_tuple_mode_streams_token_chunks(client: Any) -> None:
    _, parts = await _collect(client, "chat", CHAT_INPUT, stream_mode="messages-tuple")
    chunks = _of(parts, "messages")
    assert len(chunks) > 3
    assert "".join(msg["content"] for msg, _ in chunks) == FULL_REPLY
    assert {msg["type"] for msg, _ in chunks} == {"AIMessageChunk"}
    assert {meta["langgraph_node"] for _, meta in chunks} == {"reply"}
    assert len({msg["id"] for msg, _ in chunks}) == 1


async def test_custom_mode(client: Any) -> None:
    _, parts = await _collect(client, "slow", {"delay": 0.3}, stream_mode="custom")
    ticks = _of(parts, "custom")
    assert len(ticks) >= 2
    assert all(set(t) == {"tick"} for t in ticks)
    assert _events(parts) == ["metadata"] + ["custom"] * len(ticks) + ["end"]


async def test_events_mode(client: Any) -> None:
    _, parts = await _collect(client, "three_steps", {"steps": []}, stream_mode="events")
    evs = _of(parts, "events")
    assert {"on_chain_start", "on_chain_stream", "on_chain_end"} <= {e["event"] for e in evs}
    started = [e["name"] for e in evs if e["event"] == "on_chain_start"]
    assert {"a", "b", "c"} <= set(started)
    assert evs[-1]["event"] == "on_chain_end"
    assert evs[-1]["data"]["output"] == {"steps": ["a", "b", "c"]}


async def test_debug_mode(client: Any) -> None:
    _, parts = await _collect(client, "three_steps", {"steps": []}, stream_mode="debug")
    debug = _of(parts, "debug")
    assert {d["type"] for d in debug} == {"checkpoint", "task", "task_result"}
    results = [d["payload"] for d in debug if d["type"] == "task_result"]
    assert [r["name"] for r in results] == ["a", "b", "c"]
    assert debug[-1]["type"] == "checkpoint"
    assert debug[-1]["payload"]["values"] == {"steps": ["a", "b", "c"]}


async def test_tasks_mode(client: Any) -> None:
    _, parts = await _collect(client, "three_steps", {"steps": []}, stream_mode="tasks")
    tasks = _of(parts, "tasks")
    starts = [t for t in tasks if "input" in t]
    results = [t for t in tasks if "result" in t]
    assert [t["name"] for t in starts] == ["a", "b", "c"]
    assert [t["result"] for t in results] == [{"steps": ["a"]}, {"steps": ["b"]}, {"steps": ["c"]}]
    assert [t["id"] for t in starts] == [t["id"] for t in results]


async def test_checkpoints_mode(client: Any) -> None:
    thread_id, parts = await _collect(client, "three_steps", {"steps": []},
                                      stream_mode="checkpoints")
    cps = _of(parts, "checkpoints")
    assert len(cps) == 5  # the input (step -1), the start (step 0), then one per node
    assert cps[-1]["values"] == {"steps": ["a", "b", "c"]} and cps[-1]["next"] == []
    assert [c["next"] for c in cps[1:4]] == [["a"], ["b"], ["c"]]
    last_id = cps[-1]["config"]["configurable"]["checkpoint_id"]
    state = await client.threads.get_state(thread_id)
    assert state["checkpoint"]["checkpoint_id"] == last_id


# ---- several at once, subgraphs, errors -------------------------------------------------
async def test_several_modes_at_once(client: Any) -> None:
    _, parts = await _collect(client, "slow", {"delay": 0.2, "marker": "m"},
                              stream_mode=["values", "updates", "custom"])
    kinds = set(_events(parts))
    assert kinds == {"metadata", "values", "updates", "custom", "end"}
    assert _of(parts, "values")[-1]["steps"] == ["first", "slept:m"]
    assert [next(iter(u)) for u in _of(parts, "updates")] == ["first", "sleepy"]
    # custom ticks come from inside `sleepy`: after the `first` update, before the `sleepy` one.
    events = _events(parts)
    updates_at = [i for i, e in enumerate(events) if e == "updates"]
    customs_at = [i for i, e in enumerate(events) if e == "custom"]
    assert updates_at[0] < min(customs_at) and max(customs_at) < updates_at[1]


async def test_stream_subgraphs_namespaces_events(client: Any) -> None:
    _, parts = await _collect(client, "nested", {"steps": []}, stream_mode=["updates", "values"],
                              stream_subgraphs=True)
    child_events = [p for p in parts if "|" in p.event]
    assert child_events, _events(parts)
    for p in child_events:
        mode, ns = p.event.split("|", 1)
        assert mode in ("updates", "values") and ns.startswith("child:")
    child_updates = [p.data for p in child_events if p.event.startswith("updates|")]
    assert child_updates == [{"inner_1": {"steps": ["inner_1"]}}, {"inner_2": {"steps": ["inner_2"]}}]
    # The child returns its whole state, which the parent's `operator.add` reducer appends.
    assert _of(parts, "values")[-1] == {"steps": ["outer", "outer", "inner_1", "inner_2"]}


async def test_without_stream_subgraphs_no_namespaced_events(client: Any) -> None:
    _, parts = await _collect(client, "nested", {"steps": []}, stream_mode="updates")
    assert all("|" not in e for e in _events(parts))


async def test_error_event_on_failing_graph(client: Any) -> None:
    thread_id, parts = await _collect(client, "failing", {"steps": []}, stream_mode="values")
    assert "error" in _events(parts)
    (err,) = _of(parts, "error")
    assert err["error"] == "ValueError"
    assert err["message"] == "node exploded on purpose"
    assert _of(parts, "values")[-1] == {"steps": ["ok"]}
    (run,) = await client.runs.list(thread_id)
    assert run["status"] == "error"


async def test_interrupt_shows_in_updates_and_values(client: Any) -> None:
    _, parts = await _collect(client, "approval", {"steps": []}, stream_mode=["updates", "values"])
    interrupts = [u["__interrupt__"] for u in _of(parts, "updates") if "__interrupt__" in u]
    assert interrupts and interrupts[0][0]["value"]["question"] == "approve?"
    assert interrupts[0][0]["id"]


async def test_unknown_stream_mode_is_refused(client: Any) -> None:
    import httpx

    thread = await client.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as exc:
        async for _ in client.runs.stream(thread["thread_id"], "three_steps", input={},
                                          stream_mode="nonsense"):
            pass
    assert exc.value.response.status_code == 422


# ---- joining a run's stream -------------------------------------------------------------
async def test_join_stream_and_resume_from_last_event_id(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"delay": 0.3, "marker": "j"},
                                   stream_mode=["values", "custom"], stream_resumable=True)
    full = [p async for p in client.runs.join_stream(tid, run["run_id"])]
    assert full[0].event == "metadata" and full[-1].event == "end"
    assert {"values", "custom"} <= set(_events(full))
    assert all(p.id for p in full)
    rest = [p async for p in client.runs.join_stream(tid, run["run_id"], last_event_id=full[2].id)]
    assert [(p.id, p.event, p.data) for p in rest] == [(p.id, p.event, p.data) for p in full[3:]]


async def test_join_stream_filters_modes(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"delay": 0.2},
                                   stream_mode=["values", "custom"], stream_resumable=True)
    parts = [p async for p in client.runs.join_stream(tid, run["run_id"], stream_mode="values")]
    assert set(_events(parts)) == {"metadata", "values", "end"}


async def test_disconnect_with_on_disconnect_cancel_interrupts_the_run(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    stream = client.runs.stream(tid, "slow", input={"delay": 20}, stream_mode="custom",
                                on_disconnect="cancel")
    first = None
    async for part in stream:
        first = part
        break
    await stream.aclose()
    assert first is not None and first.event == "metadata"
    run_id = first.data["run_id"]
    run = await _wait_status(client, tid, run_id, "interrupted", "success", "error")
    assert run["status"] == "interrupted"


async def test_disconnect_without_cancel_lets_the_run_finish(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    stream = client.runs.stream(tid, "slow", input={"delay": 0.3, "marker": "kept"},
                                stream_mode="custom")
    async for part in stream:
        run_id = part.data["run_id"]
        break
    await stream.aclose()
    assert await client.runs.join(tid, run_id) == {"steps": ["first", "slept:kept"],
                                                   "delay": 0.3, "marker": "kept"}
    assert (await client.runs.get(tid, run_id))["status"] == "success"
