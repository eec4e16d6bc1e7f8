"""PostgreSQL's checkpointer stores a growing list as appends (``storage/postgres_saver.py``):
a step's new messages, not the whole list again. Every read — from a process that never saw
the run, at any checkpoint of the history, after a fork, a prune, a rollback or a copy — gives
back exactly the list LangGraph wrote."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import operator
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import copy_checkpoint, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import Send

from dockyard.runtime.executor import _last_test, _start_is_internal
from dockyard.storage import create_storage
from dockyard.storage.postgres import PostgresStorage
from dockyard.storage.postgres_saver import (
    _HOLDING,
    DELTA_PREFIX,
    REF_PREFIX,
    PooledPostgresSaver,
)
from dockyard.storage.resources import Threads
from tests.conftest import TEST_DATABASE, NewDatabase

pytestmark = pytest.mark.skipif(TEST_DATABASE != "postgres",
                                reason="PostgreSQL only (DOCKYARD_TEST_DATABASE=postgres)")

BODY = "x" * 500


class State(TypedDict, total=False):
    messages: Annotated[list[Any], add_messages]
    steps: Annotated[list[int], operator.add]
    target: int


def grow(state: State) -> dict[str, Any]:
    n = len(state.get("messages", []))
    return {"messages": [AIMessage(content=f"{n}:{BODY}", id=f"m{n}")], "steps": [n]}


def more(state: State) -> str:
    return "grow" if len(state.get("messages", [])) < state.get("target", 0) else END


def build(node: Any = grow) -> StateGraph[Any]:
    """``node`` (``grow`` by default) until the thread holds ``target`` messages."""
    g = StateGraph(State)
    g.add_node("grow", node)
    g.add_edge(START, "grow")
    g.add_conditional_edges("grow", more, ["grow", END])
    return g


@pytest.fixture
async def storages(
    new_database: NewDatabase, tmp_path: Path
) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two storages on one database: the writer, and a reader that never saw the writes."""
    url = new_database()
    opened: list[PostgresStorage] = []
    for _ in range(2):
        storage = create_storage(url, default_path=tmp_path / "unused.sqlite")
        assert isinstance(storage, PostgresStorage)
        await storage.open()
        await storage.migrate()
        opened.append(storage)
    try:
        yield opened[0], opened[1]
    finally:
        for storage in opened:
            await storage.close()


def cfg(thread: str, **extra: Any) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, **extra}, "recursion_limit": 200}


def contents(messages: list[Any]) -> list[str]:
    return [m.content for m in messages]


async def blob_rows(storage: PostgresStorage, thread: str, channel: str) -> list[dict[str, Any]]:
    return await storage.fetchall(
        "SELECT version, type, length(blob) AS size FROM checkpoint_blobs"
        " WHERE thread_id = ? AND channel = ? ORDER BY version", (thread, channel))


def is_link(type_: str) -> bool:
    return type_.startswith((DELTA_PREFIX, REF_PREFIX))


def expected(n: int) -> list[str]:
    return [f"{i}:{BODY}" for i in range(n)]


async def test_a_growing_list_is_stored_as_appends_and_read_back_whole(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    graph = build().compile(checkpointer=writer.checkpointer)
    out = await graph.ainvoke({"target": 40}, cfg("t"), durability="sync")
    assert contents(out["messages"]) == expected(40)

    rows = await blob_rows(writer, "t", "messages")
    assert len(rows) == 40
    # The first value is stored whole; every later one as its new message only, and that
    # message, being byte for byte the node's write, is not stored a second time: the row
    # refers to the write.
    assert not is_link(rows[0]["type"])
    assert all(r["type"].startswith(REF_PREFIX) and r["size"] is None for r in rows[1:])
    whole = len(writer.checkpointer.serde.dumps_typed(out["messages"])[1])
    assert rows[0]["size"] < whole / 20  # linear: all of it stored once, in the writes
    # operator.add lists too.
    assert all(is_link(r["type"]) for r in (await blob_rows(writer, "t", "steps"))[1:])

    # A process that never saw the run reads the whole state back, at every checkpoint.
    fresh = build().compile(checkpointer=reader.checkpointer)
    state = await fresh.aget_state(cfg("t"))
    assert contents(state.values["messages"]) == expected(40)
    assert state.values["steps"] == list(range(40))
    history = [s async for s in fresh.aget_state_history(cfg("t"))]
    for snapshot in history:
        n = len(snapshot.values.get("messages", []))
        assert contents(snapshot.values.get("messages", [])) == expected(n)
        assert snapshot.values.get("steps", []) == list(range(n))
    assert sorted({len(s.values.get("messages", [])) for s in history}) == list(range(41))


async def test_the_next_run_appends_to_what_it_read(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    await build().compile(checkpointer=writer.checkpointer).ainvoke(
        {"target": 5}, cfg("t"), durability="sync")
    # Another process continues the thread: its first write already appends to the value it
    # loaded, its chain reaching back to the first process's rows.
    other = build().compile(checkpointer=reader.checkpointer)
    out = await other.ainvoke({"target": 10}, cfg("t"), durability="sync")
    assert contents(out["messages"]) == expected(10)
    rows = await blob_rows(writer, "t", "messages")
    assert sum(not is_link(r["type"]) for r in rows) == 1
    state = await build().compile(checkpointer=writer.checkpointer).aget_state(cfg("t"))
    assert contents(state.values["messages"]) == expected(10)


async def test_a_replaced_message_stores_the_list_whole(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    graph = build().compile(checkpointer=writer.checkpointer)
    await graph.ainvoke({"target": 4}, cfg("t"), durability="sync")
    # add_messages replaces the message with the same id: not an append.
    await graph.aupdate_state(cfg("t"), {"messages": [AIMessage(content="edited", id="m1")]})
    rows = await blob_rows(writer, "t", "messages")
    assert not is_link(rows[-1]["type"])
    await graph.aupdate_state(cfg("t"), {"messages": [HumanMessage(content="next", id="h")]})
    assert is_link((await blob_rows(writer, "t", "messages"))[-1]["type"])
    state = await build().compile(checkpointer=reader.checkpointer).aget_state(cfg("t"))
    want = expected(4)
    want[1] = "edited"
    assert contents(state.values["messages"]) == [*want, "next"]


async def test_a_message_edited_in_place_and_returned_is_saved(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """A node that edits a stored message in place and returns it (add_messages puts it back
    where it was, the same object): the list is stored whole, so the edit is not lost."""
    writer, reader = storages

    def edit(state: State) -> dict[str, Any]:
        first = state["messages"][0]
        first.content = "edited in place"
        return {"messages": [first, AIMessage(content="added", id="new")]}

    g = StateGraph(State)
    g.add_node("grow", grow)
    g.add_node("edit", edit)
    g.add_edge(START, "grow")
    g.add_conditional_edges("grow", lambda st: "edit" if more(st) == END else "grow",
                            ["grow", "edit"])
    g.add_edge("edit", END)
    out = await g.compile(checkpointer=writer.checkpointer).ainvoke(
        {"target": 3}, cfg("t"), durability="sync")
    assert contents(out["messages"]) == ["edited in place", *expected(3)[1:], "added"]
    assert not is_link((await blob_rows(writer, "t", "messages"))[-1]["type"])
    state = await build().compile(checkpointer=reader.checkpointer).aget_state(cfg("t"))
    assert contents(state.values["messages"]) == ["edited in place", *expected(3)[1:], "added"]


async def test_a_fork_from_an_old_checkpoint_appends_to_that_checkpoint(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    graph = build().compile(checkpointer=writer.checkpointer)
    await graph.ainvoke({"target": 8}, cfg("t"), durability="sync")
    before_fork = (await graph.aget_state(cfg("t"))).config["configurable"]["checkpoint_id"]
    history = [s async for s in graph.aget_state_history(cfg("t"))]
    old = next(s for s in history if len(s.values.get("messages", [])) == 3)
    forked = await graph.aupdate_state(old.config, {"messages": [HumanMessage("fork", id="f")]})
    rows = await blob_rows(writer, "t", "messages")
    assert is_link(rows[-1]["type"])
    view = build().compile(checkpointer=reader.checkpointer)
    assert contents((await view.aget_state(forked)).values["messages"]) == [*expected(3), "fork"]
    # The original branch is untouched.
    original = await view.aget_state(cfg("t", checkpoint_id=before_fork))
    assert contents(original.values["messages"]) == expected(8)


async def test_prune_and_rollback_keep_the_bases_a_kept_value_needs(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    graph = build().compile(checkpointer=writer.checkpointer)
    await graph.ainvoke({"target": 6}, cfg("t", run_id="run-1"), durability="sync")
    await graph.ainvoke({"target": 9}, cfg("t", run_id="run-2"), durability="sync")

    # Rolling back run-2 deletes its checkpoints and its links, and nothing run-1 needs.
    await writer.delete_checkpoints("t", run_id="run-2")
    view = build().compile(checkpointer=reader.checkpointer)
    assert contents((await view.aget_state(cfg("t"))).values["messages"]) == expected(6)
    assert len(await blob_rows(writer, "t", "messages")) == 6

    # A copy carries the chains and the writes they refer to.
    await writer.copy_checkpoints("t", "early-copy")
    assert contents((await view.aget_state(cfg("early-copy"))).values["messages"]) == expected(6)

    # keep_latest deletes every other checkpoint and its writes, but not the chain under the
    # latest value: the links that referred to deleted writes took their bytes first.
    assert any(r["type"].startswith(REF_PREFIX) for r in await blob_rows(writer, "t", "messages"))
    await writer.delete_checkpoints("t", keep_latest=True)
    assert len([s async for s in view.aget_state_history(cfg("t"))]) == 1
    assert contents((await view.aget_state(cfg("t"))).values["messages"]) == expected(6)
    kept = await blob_rows(writer, "t", "messages")
    assert len(kept) == 6 and not any(r["type"].startswith(REF_PREFIX) for r in kept)

    # A copied thread carries its chains.
    await writer.copy_checkpoints("t", "copy")
    assert contents((await view.aget_state(cfg("copy"))).values["messages"]) == expected(6)


@pytest.mark.parametrize("merged", [False, True], ids=["writes-first", "one-statement"])
async def test_a_write_that_was_already_stored_is_not_referred_to(
    storages: tuple[PostgresStorage, PostgresStorage], merged: bool,
) -> None:
    """A task run twice (its first worker's lease expired while it ran) finds its write row
    taken: the checkpoint stores its own bytes rather than point at the other run's.

    ``one-statement``: the checkpoint's aput comes in the same turn of the event loop as the
    writes' aput_writes (as LangGraph's loop calls them after a step's last task), takes the
    writes and stores both in one statement, which makes the same choice itself."""
    writer, reader = storages
    await build().compile(checkpointer=writer.checkpointer).ainvoke(
        {"target": 2}, cfg("t"), durability="sync")
    saver = writer.checkpointer
    sent_alone: list[int] = []
    put_writes = saver._put_writes

    async def counting(sql: str, params: Any, *key: str) -> set[int]:
        sent_alone.append(len(params))
        return await put_writes(sql, params, *key)

    saver._put_writes = counting  # type: ignore[method-assign]

    async def append(task: str, message: AIMessage, first: AIMessage | None = None) -> str:
        head = await saver.aget_tuple(cfg("t"))  # the saver now knows this list's objects
        assert head is not None
        if first is not None:  # another worker wrote this task's row before us
            await reader.checkpointer.aput_writes(head.config, [("messages", [first])], task)
        checkpoint = copy_checkpoint(head.checkpoint)
        checkpoint["id"] = str(uuid6(clock_seq=-2))
        version = saver.get_next_version(str(checkpoint["channel_versions"]["messages"]), None)
        checkpoint["channel_versions"]["messages"] = version
        checkpoint["channel_values"]["messages"] = [
            *head.checkpoint["channel_values"]["messages"], message]
        writes = saver.aput_writes(head.config, [("messages", [message])], task)
        put = saver.aput(head.config, checkpoint, {"source": "loop", "step": 9},
                         {"messages": version})
        sent_alone.clear()
        if merged:
            await asyncio.gather(asyncio.create_task(writes), asyncio.create_task(put))
            assert sent_alone == []  # the checkpoint's statement carried the write
        else:
            await writes
            await put
            assert sent_alone == [1]
        return str((await blob_rows(writer, "t", "messages"))[-1]["type"])

    assert (await append("task-1", AIMessage("mine", id="a"),
                                    first=AIMessage("other", id="a"))).startswith(DELTA_PREFIX)
    assert (await append("task-2", AIMessage("next", id="b"))).startswith(REF_PREFIX)
    got = await reader.checkpointer.aget_tuple(cfg("t"))
    assert got is not None
    assert contents(got.checkpoint["channel_values"]["messages"])[-2:] == ["mine", "next"]
    rows = await blob_rows(writer, "t", "messages")
    assert rows[-1]["size"] is None  # a reference holds no bytes
    assert rows[-2]["size"] > 0
    parent = await reader.checkpointer.aget_tuple(got.parent_config)  # type: ignore[arg-type]
    assert parent is not None  # the step's write is stored, under the checkpoint it ran on
    assert [(t, c, contents(v)) for t, c, v in parent.pending_writes or ()] == [
        ("task-2", "messages", ["next"])]


async def test_writes_a_failed_checkpoint_took_are_stored_on_their_own(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """The step's statement fails in the database (here a constraint rejects the checkpoint):
    its writes, which it had taken from aput_writes, are not lost with it."""
    writer, reader = storages
    await build().compile(checkpointer=writer.checkpointer).ainvoke(
        {"target": 1}, cfg("t"), durability="sync")
    await writer.execute("ALTER TABLE checkpoints ADD CONSTRAINT test_reject"
                         " CHECK (checkpoint_id <> 'rejected')")
    saver = writer.checkpointer
    head = await saver.aget_tuple(cfg("t"))
    assert head is not None
    checkpoint = copy_checkpoint(head.checkpoint)
    checkpoint["id"] = "rejected"
    took: list[int] = []
    put_statement = saver._put_statement

    def spy(*args: Any) -> Any:
        took.append(len(args[-2]))  # taken, before held
        return put_statement(*args)

    saver._put_statement = spy  # type: ignore[method-assign]
    writes = asyncio.create_task(saver.aput_writes(
        head.config, [("messages", [AIMessage("kept", id="k")])], "task-k"))
    put = asyncio.create_task(saver.aput(head.config, checkpoint, {"step": 9}, {}))
    await writes
    with pytest.raises(Exception, match="test_reject"):
        await put
    assert took == [1]  # the failed statement carried the task's writes
    again = await reader.checkpointer.aget_tuple(head.config)
    assert again is not None
    assert [(t, contents(v)) for t, _, v in again.pending_writes or ()] == [("task-k", ["kept"])]


async def test_a_broken_chain_is_a_clear_error(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    await build().compile(checkpointer=writer.checkpointer).ainvoke(
        {"target": 3}, cfg("t"), durability="sync")
    rows = await blob_rows(writer, "t", "messages")
    await writer.execute("DELETE FROM checkpoint_blobs WHERE thread_id = 't' AND version = ?",
                         (rows[0]["version"],))
    saver: PooledPostgresSaver = reader.checkpointer
    with pytest.raises(Exception, match="misses its base"):
        await saver.aget_tuple(cfg("t"))


class _Recording:
    """A cursor that records the SQL it executes."""

    def __init__(self, cur: Any, sent: list[str]) -> None:
        self._cur, self._sent = cur, sent

    async def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        self._sent.append(" ".join(str(sql).split()))
        return await self._cur.execute(sql, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


def _spy_statements(saver: PooledPostgresSaver) -> list[str]:
    """The statements ``saver`` sends from now on (their SQL, whitespace folded)."""
    sent: list[str] = []
    cursor = saver._cursor

    @contextlib.asynccontextmanager
    async def spying(**kw: Any) -> AsyncIterator[Any]:
        async with cursor(**kw) as cur:
            yield _Recording(cur, sent)

    saver._cursor = spying  # type: ignore[method-assign]
    return sent


def _input_checkpoint() -> tuple[dict[str, Any], Any]:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"__start__": {"target": 1}}
    checkpoint["channel_versions"] = {"__start__": 1}
    return checkpoint, {"source": "input", "step": -1, "parents": {}}


async def test_a_held_input_checkpoint_rides_in_the_first_steps_statement(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """Within ``hold_checkpoints`` (how the executor streams a run), the input checkpoint is not
    sent alone: the first step's statement carries it, and the step's writes go with them."""
    writer, reader = storages
    saver = writer.checkpointer
    graph = build().compile(checkpointer=saver)
    sent = _spy_statements(saver)
    async with saver.hold_checkpoints():
        final = await graph.ainvoke({"target": 3}, cfg("t"), durability="sync")
    assert contents(final["messages"])[-1].startswith("2:")
    writes = [s for s in sent if s.startswith(("insert", "with"))]
    # Five checkpoints (input, start, three steps) in four statements, one a step: the first
    # carries the input checkpoint, none sends writes alone.
    assert len(writes) == 4, writes
    assert writes[0].startswith("with held_blobs as")
    assert all(s.startswith("with w as") for s in writes[1:]), writes
    history = [c async for c in reader.checkpointer.alist(cfg("t"))][::-1]
    assert [c.metadata["source"] for c in history] == ["input", "loop", "loop", "loop", "loop"]
    for parent, child in itertools.pairwise(history):
        assert child.parent_config is not None
        assert child.parent_config["configurable"]["checkpoint_id"] == \
            parent.config["configurable"]["checkpoint_id"]
    latest = await reader.checkpointer.aget_tuple(cfg("t"))
    assert latest is not None
    assert contents(latest.checkpoint["channel_values"]["messages"]) == \
        contents(final["messages"])


async def test_a_read_of_the_thread_sends_the_held_checkpoint_first(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    saver = writer.checkpointer
    checkpoint, metadata = _input_checkpoint()
    async with saver.hold_checkpoints():
        await saver.aput(cfg("t", checkpoint_ns=""), checkpoint, metadata, {"__start__": 1})
        assert await reader.checkpointer.aget_tuple(cfg("t")) is None  # held, not sent
        own = await saver.aget_tuple(cfg("t"))
        assert own is not None and own.checkpoint["id"] == checkpoint["id"]
        other = await reader.checkpointer.aget_tuple(cfg("t"))
        assert other is not None and other.checkpoint["channel_values"]["__start__"] == \
            {"target": 1}


@pytest.mark.parametrize("ending", ["normal", "error"])
async def test_the_end_of_the_hold_sends_what_is_still_held(
    storages: tuple[PostgresStorage, PostgresStorage], ending: str,
) -> None:
    """A run that sends nothing after its input checkpoint (it stopped at once, or failed)
    still leaves it stored when the block ends."""
    writer, reader = storages
    saver = writer.checkpointer
    checkpoint, metadata = _input_checkpoint()
    with contextlib.suppress(RuntimeError):
        async with saver.hold_checkpoints():
            await saver.aput(cfg("t", checkpoint_ns=""), checkpoint, metadata, {"__start__": 1})
            if ending == "error":
                raise RuntimeError("the run failed")
    stored = await reader.checkpointer.aget_tuple(cfg("t"))
    assert stored is not None and stored.checkpoint["id"] == checkpoint["id"]
    assert stored.metadata["source"] == "input"


async def test_a_thread_known_to_have_no_checkpoint_is_not_read_at_the_start(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """``hold_checkpoints(no_checkpoint=…)`` (the claim found the thread without one): LangGraph's
    read of the latest checkpoint at the start of the run is answered without a query, once;
    later reads query as usual."""
    writer, reader = storages
    saver = writer.checkpointer
    graph = build().compile(checkpointer=saver)
    sent = _spy_statements(saver)
    async with saver.hold_checkpoints(no_checkpoint="t"):
        final = await graph.ainvoke({"target": 2}, cfg("t"), durability="sync")
        assert not [s for s in sent if s.startswith("select")]
        latest = await saver.aget_tuple(cfg("t"))  # not the start's read: a query
    assert [s for s in sent if s.startswith("select")]
    assert latest is not None
    assert contents(latest.checkpoint["channel_values"]["messages"]) == \
        contents(final["messages"])
    history = [c async for c in reader.checkpointer.alist(cfg("t"))]
    assert len(history) == 4  # input, start, two steps


# --- the run's last checkpoint, held for its outcome ----------------------------------------

_while_nodes_ran: list[bool] = []


def _probed(fn: Any) -> Any:
    """``fn``, recording whether a checkpoint was held back while it ran (it must not be)."""
    def node(state: Any) -> Any:
        holding = _HOLDING.get()
        _while_nodes_ran.append(holding is None or holding.last is None)
        return fn(state)
    return node


class Fan(TypedDict, total=False):
    items: Annotated[list[int], operator.add]
    n: int


def _fan_out() -> StateGraph[Any]:
    """Send fan-out, a join, and a deferred node after it."""
    g = StateGraph(Fan)
    g.add_node("work", _probed(lambda s: {"items": [s["n"] * 10]}))
    g.add_node("join", _probed(lambda s: {"items": [len(s["items"])]}))
    g.add_node("late", _probed(lambda s: {"items": [-1]}), defer=True)
    g.add_conditional_edges(START, lambda s: [Send("work", {"n": i}) for i in range(3)],
                            ["work"])
    g.add_edge("work", "join")
    g.add_edge("join", "late")
    return g


def _with_subgraph() -> StateGraph[Any]:
    inner = StateGraph(State)
    inner.add_node("grow", _probed(grow))
    inner.add_edge(START, "grow")
    outer = StateGraph(State)
    outer.add_node("sub", inner.compile())
    outer.add_node("grow", _probed(grow))
    outer.add_edge(START, "sub")
    outer.add_edge("sub", "grow")
    return outer


def _looping() -> StateGraph[Any]:
    return build(_probed(grow))


SHAPES = {
    "loop": (_looping, {"target": 3}, {}),
    "fan-out": (_fan_out, {"items": []}, {}),
    "subgraph": (_with_subgraph, {"target": 2}, {}),
    "interrupt-after": (_looping, {"target": 2}, {"interrupt_after": ["grow"]}),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
async def test_only_the_runs_last_checkpoint_is_held_and_the_history_is_whole(
    storages: tuple[PostgresStorage, PostgresStorage], shape: str,
) -> None:
    """``hold_checkpoints(is_last=…)`` as the executor uses it: no checkpoint is held while a
    node runs (conditional loops, ``Send`` fan-out, a deferred node, subgraphs, an interrupt
    after a node), and once the held one is sent the thread's history is the one the same run
    leaves without holding."""
    writer, reader = storages
    saver = writer.checkpointer
    make, value, options = SHAPES[shape]
    plain = make().compile(checkpointer=saver)
    expected = await plain.ainvoke(value, cfg("plain"), durability="sync", **options)
    graph = make().compile(checkpointer=saver)
    _while_nodes_ran.clear()
    async with saver.hold_checkpoints(thread_id="t", is_last=_last_test(graph)) as holding:
        got = await graph.ainvoke(value, cfg("t"), durability="sync", **options)
    assert _while_nodes_ran and all(_while_nodes_ran), _while_nodes_ran
    assert got == expected
    assert (holding.last is not None) == (shape != "interrupt-after")
    await holding.flush()
    assert holding.last is None

    async def history(thread: str) -> list[Any]:
        return [(c.metadata["source"], c.metadata["step"], c.checkpoint["channel_values"])
                async for c in reader.checkpointer.alist(cfg(thread))]

    assert await history("t") == await history("plain")


async def test_the_last_checkpoint_commits_with_the_runs_outcome(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """The held last checkpoint is a statement for ``execute_together``: until it is
    committed, another process sees the checkpoint before it; after, the whole history; and
    once ``committed`` its list values serve as bases."""
    writer, reader = storages
    saver = writer.checkpointer
    graph = build().compile(checkpointer=saver)
    sent = _spy_statements(saver)
    async with saver.hold_checkpoints(thread_id="t", is_last=_last_test(graph)) as holding:
        final = await graph.ainvoke({"target": 3}, cfg("t"), durability="sync")
    # Five checkpoints (input, start, three steps) in three statements: the input rides in
    # the first step's, the last one is held.
    assert len([s for s in sent if s.startswith(("insert", "with"))]) == 3, sent
    before = await reader.checkpointer.aget_tuple(cfg("t"))
    assert before is not None and before.metadata["step"] == 2
    statement = holding.take()
    assert statement is not None and holding.take() is None

    def known() -> list[str]:  # the message lists the saver may store tails against
        return [k.version for k in saver._known.get(("t", "", "messages"), [])]

    threads = Threads(writer)
    await threads.insert("default", "t", {})
    await writer.execute_together(
        [statement, threads.update_statement("default", "t", status="idle")])
    latest = await reader.checkpointer.aget_tuple(cfg("t"))
    assert latest is not None and latest.metadata["step"] == 3
    assert contents(latest.checkpoint["channel_values"]["messages"]) == \
        contents(final["messages"])
    assert len([c async for c in reader.checkpointer.alist(cfg("t"))]) == 5
    version = str(latest.checkpoint["channel_versions"]["messages"])
    assert version not in known()  # not before it is committed
    holding.committed()
    assert known()[0] == version


async def test_a_read_or_a_failure_sends_the_held_last_checkpoint(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, reader = storages
    saver = writer.checkpointer
    graph = build().compile(checkpointer=saver)
    async with saver.hold_checkpoints(thread_id="a", is_last=_last_test(graph)) as holding:
        await graph.ainvoke({"target": 2}, cfg("a"), durability="sync")
        assert holding.last is not None
        state = await graph.aget_state(cfg("a"))  # a read: sends it first
        assert holding.last is None
    stored = await reader.checkpointer.aget_tuple(cfg("a"))
    assert stored is not None and stored.checkpoint["id"] == state.config["configurable"][
        "checkpoint_id"]
    with contextlib.suppress(RuntimeError):
        async with saver.hold_checkpoints(thread_id="b", is_last=_last_test(graph)) as holding:
            await graph.ainvoke({"target": 2}, cfg("b"), durability="sync")
            assert holding.last is not None
            raise RuntimeError("the run failed after its last step")
    assert holding.last is None
    stored = await reader.checkpointer.aget_tuple(cfg("b"))
    assert stored is not None and stored.metadata["step"] == 2


async def test_the_start_step_rides_with_the_input_checkpoint(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """With ``start_is_internal`` (a graph whose ``__start__`` node is LangGraph's own), the
    start step's checkpoint and writes join the held input checkpoint: the first node's
    statement carries both, and the history is the one the run leaves without holding."""
    writer, reader = storages
    saver = writer.checkpointer
    graph = _looping().compile(checkpointer=saver)
    assert _start_is_internal(graph) and not _start_is_internal(_fan_out().compile())
    sent = _spy_statements(saver)
    async with saver.hold_checkpoints(thread_id="t", start_is_internal=True):
        final = await graph.ainvoke({"target": 3}, cfg("t"), durability="sync")
    writes = [s for s in sent if s.startswith(("insert", "with"))]
    # Five checkpoints (input, start, three steps) in three statements: the first node's
    # carries the input and start checkpoints (and the start step's writes).
    assert len(writes) == 3, writes
    assert writes[0].startswith("with held_blobs as") and " held_w as (" in writes[0]
    # Only the run's own thread (a graph a node runs on another thread is not the run's).
    sent.clear()
    async with saver.hold_checkpoints(thread_id="t", start_is_internal=True):
        await graph.ainvoke({"target": 3}, cfg("other"), durability="sync")
    assert len([s for s in sent if s.startswith(("insert", "with"))]) == 4
    await graph.ainvoke({"target": 3}, cfg("plain"), durability="sync")

    async def history(thread: str) -> list[Any]:
        return [(c.metadata["source"], c.metadata["step"], c.checkpoint["channel_values"],
                 c.pending_writes) async for c in reader.checkpointer.alist(cfg(thread))]

    got, expected = await history("t"), await history("plain")
    assert [h[:3] for h in got] == [h[:3] for h in expected]
    # The start step's writes are stored with the input checkpoint, as without holding.
    assert [len(h[3] or ()) for h in got] == [len(h[3] or ()) for h in expected]
    assert contents(final["messages"])[-1].startswith("2:")


async def test_a_held_start_step_is_sent_by_a_read_and_at_the_end(
    storages: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """A read of the thread while the start step is held sends it first (the input and start
    checkpoints); so does the end of the block when the run stops before its first node."""
    writer, reader = storages
    saver = writer.checkpointer
    seen: list[list[int]] = []

    async def reading(state: State) -> dict[str, Any]:
        await saver.aget_tuple(cfg("r"))  # a read from inside the run, with both held
        seen.append([c.metadata["step"] async for c in reader.checkpointer.alist(cfg("r"))])
        return grow(state)

    g = StateGraph(State)
    g.add_node("grow", reading)
    g.add_edge(START, "grow")
    graph = g.compile(checkpointer=saver)
    async with saver.hold_checkpoints(thread_id="r", start_is_internal=True):
        await graph.ainvoke({"target": 1}, cfg("r"), durability="sync")
    assert seen == [[0, -1]]
    async with saver.hold_checkpoints(thread_id="i", start_is_internal=True) as holding:
        paused = await graph.ainvoke({"target": 1}, cfg("i"), durability="sync",
                                     interrupt_before=["grow"])
        assert holding.inputs  # the input and start checkpoints wait for a next statement
    assert not paused.get("messages")
    stored = [c.metadata["step"] async for c in reader.checkpointer.alist(cfg("i"))]
    assert stored == [0, -1]
    state = await graph.aget_state(cfg("i"))
    assert state.next == ("grow",)
