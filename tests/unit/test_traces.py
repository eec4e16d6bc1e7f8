"""Run traces: the recorder (LangChain callbacks → spans) on real graphs, and their storage on
the database DOCKYARD_TEST_DATABASE selects (upserts, tenant scoping, retention)."""

from __future__ import annotations

import operator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, interrupt

from dockyard.runtime.trace import TraceRecorder, capture
from dockyard.storage.base import Storage
from dockyard.storage.traces import SPAN_COLS, Traces, header_statement, span_statements


class S(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]


async def _record(graph: Any, inp: Any, **kw: Any) -> tuple[TraceRecorder, list[dict[str, Any]]]:
    rec = TraceRecorder({"run_id": "r1", "tenant_id": "t1", "thread_id": "th", "attempts": 1},
                        **kw)
    config = {"configurable": {"thread_id": "th"}, "callbacks": [rec]}
    status = "success"
    try:
        await graph.copy(update={"checkpointer": InMemorySaver()}).ainvoke(inp, config)
    except Exception:
        status = "error"
    rec.finish(status)
    return rec, [dict(zip(SPAN_COLS, row, strict=True)) for row in rec.take()]


def _flaky_graph() -> Any:
    calls = {"n": 0}

    def flaky(state: S) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"try {calls['n']}")
        return {"steps": ["flaky"]}

    def route(state: S) -> str:
        return "left" if len(state.get("steps", [])) else "right"

    g = StateGraph(S)
    g.add_node("flaky", flaky, retry_policy=RetryPolicy(max_attempts=3, initial_interval=0.001,
                                                         jitter=False))
    g.add_node("left", lambda s: {"steps": ["left"]})
    g.add_node("right", lambda s: {"steps": ["right"]})
    g.add_edge(START, "flaky")
    g.add_conditional_edges("flaky", route, ["left", "right"])
    g.add_edge("left", END)
    g.add_edge("right", END)
    return g.compile()


async def test_retries_branch_taken_and_errors_are_recorded() -> None:
    rec, rows = await _record(_flaky_graph(), {"steps": []})
    names = [(r["name"], r["status"]) for r in rows]
    assert names == [("flaky", "error"), ("flaky", "error"), ("flaky", "success"),
                     ("left", "success")]
    import orjson

    metas = [orjson.loads(r["metadata"]) for r in rows]
    assert [m.get("retry", 0) for m in metas[:3]] == [0, 1, 2]
    assert metas[0]["error"] == {"type": "ConnectionError", "message": "try 1"}
    assert "ConnectionError: try 1" in orjson.loads(rows[0]["detail"])["traceback"]
    # The branch taken: the first attempt's span names the node of the next step.
    assert metas[0]["next"] == ["left"]
    assert orjson.loads(rows[2]["detail"])["output"] == {"steps": ["flaky"]}
    assert rec.totals()["retries"] == 2 and rec.totals()["errors"] == 2


async def test_interrupts_are_not_errors_and_values_are_capped() -> None:
    def ask(state: S) -> dict[str, Any]:
        return {"steps": [interrupt("ok?")]}

    g = StateGraph(S)
    g.add_node("big", lambda s: {"steps": ["x" * 5000]})
    g.add_node("ask", ask)
    g.add_edge(START, "big")
    g.add_edge("big", "ask")
    g.add_edge("ask", END)
    _, rows = await _record(g.compile(), {"steps": []}, max_value_bytes=1000)
    import orjson

    assert [r["status"] for r in rows] == ["success", "interrupted"]
    out = orjson.loads(rows[0]["detail"])["output"]
    assert out["__truncated__"] is True and out["bytes"] > 5000 and len(out["preview"]) <= 1000


def test_capture_embeds_small_values_and_hashes_them() -> None:
    small, h1 = capture({"a": 1}, 100)
    assert h1 == capture({"a": 1}, 100)[1] != capture({"a": 2}, 100)[1]
    assert capture({"a": 1}, 0) == (None, None)
    import orjson

    assert orjson.loads(orjson.dumps({"v": small})) == {"v": {"a": 1}}


async def test_spans_are_upserted_scoped_by_tenant_and_swept(db: Storage) -> None:
    traces = Traces(db)
    run = {"run_id": "r1", "tenant_id": "t1", "thread_id": "th", "attempts": 1}
    rec, _ = await _record(_flaky_graph(), {"steps": []})
    rows = [tuple(r) for r in TraceRecorder.take(rec)]  # already taken: nothing left
    assert rows == []
    rec2 = TraceRecorder(run)
    rec2.spans = rec.spans
    rec2._dirty = {s.seq: s for s in rec.spans}
    await traces.write([*span_statements(rec2.take()), header_statement(
        run, base_checkpoint_id="cp0", span_count=4, dropped=0, totals=rec.totals())])
    # Written again (a later flush): upserts, no duplicates; the base checkpoint is kept.
    rec2._dirty = {s.seq: s for s in rec.spans}
    await traces.write([*span_statements(rec2.take()), header_statement(
        run, base_checkpoint_id="cp0", span_count=4, dropped=0, totals=rec.totals())])
    spans = await traces.spans("t1", "r1", limit=10, offset=0)
    assert [s["name"] for s in spans] == ["flaky", "flaky", "flaky", "left"]
    assert "detail" not in spans[0]
    assert await traces.spans("other", "r1", limit=10, offset=0) == []
    assert await traces.header("other", "r1") is None
    header = await traces.header("t1", "r1")
    assert header is not None and header["base_checkpoint_id"] == "cp0"
    assert header["metadata"]["nodes"] == 4
    one = await traces.span("t1", "r1", 1, 0)
    assert one is not None and "traceback" in one["detail"]
    assert [s["name"] for s in await traces.spans("t1", "r1", limit=1, offset=3)] == ["left"]

    future = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert await traces.sweep((datetime.now(UTC) - timedelta(days=1)).isoformat()) == 0
    assert await traces.sweep(future) == 1
    assert await traces.header("t1", "r1") is None
    assert await traces.spans("t1", "r1", limit=10, offset=0) == []


@pytest.mark.parametrize("n", [450])
def test_span_statements_are_batched(n: int) -> None:
    rows = [tuple(range(len(SPAN_COLS)))] * n
    stmts = span_statements(rows)
    assert len(stmts) == 3 and sum(len(p) for _, p in stmts) == n * len(SPAN_COLS)


async def test_deleting_a_run_or_its_thread_deletes_its_trace(db: Storage) -> None:
    from dockyard.storage.queue import RunQueue
    from dockyard.storage.resources import Threads

    traces, queue, threads = Traces(db), RunQueue(db), Threads(db)
    rec, _ = await _record(_flaky_graph(), {"steps": []})
    for run_id, thread_id in (("r1", "th1"), ("r2", "th2"), ("r3", "th2")):
        await threads.insert("t1", thread_id, {}, if_exists="do_nothing")
        await queue.insert("t1", {"run_id": run_id, "thread_id": thread_id, "assistant_id": "a",
                                  "assistant_version": 1, "graph_id": "g", "metadata": {},
                                  "kwargs": {}, "multitask_strategy": "enqueue"})
        run = {"run_id": run_id, "tenant_id": "t1", "thread_id": thread_id, "attempts": 1}
        recorder = TraceRecorder(run)
        recorder.spans = rec.spans
        recorder._dirty = {s.seq: s for s in rec.spans}
        await traces.write([*span_statements(recorder.take()), header_statement(
            run, base_checkpoint_id=None, span_count=4, dropped=0, totals=rec.totals())])
    assert await queue.delete("t1", "r1") == 1
    assert await traces.header("t1", "r1") is None
    assert await traces.spans("t1", "r1", limit=10, offset=0) == []
    assert await traces.header("t1", "r2") is not None
    await threads.delete("t1", "th2")
    for run_id in ("r2", "r3"):
        assert await traces.header("t1", run_id) is None
        assert await traces.spans("t1", run_id, limit=10, offset=0) == []
