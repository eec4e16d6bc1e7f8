"""Runs through langgraph-sdk: human-in-the-loop, time travel, multitask strategies, cancel,
join, stateless and batch runs, failures, webhooks and the non-StateGraph graph kinds."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.http_support import QuietHandler, serve_http

pytestmark = pytest.mark.e2e

LONG = 30.0  # a `slow` run that only ends when a test cancels it


async def _until(check: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _status(client: Any, tid: str, rid: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        run = await client.runs.get(tid, rid)
        return run if run["status"] in statuses else None

    return await _until(check, f"run {rid} in {statuses}")  # type: ignore[no-any-return]


async def _busy_slow_run(client: Any, marker: str = "1") -> tuple[str, str]:
    """A thread whose `slow` run has finished its `first` node and is sleeping."""
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow", input={"delay": LONG, "marker": marker})

    async def slept() -> bool:
        state = await client.threads.get_state(tid)
        return state["values"].get("steps") == ["first"]

    await _until(slept, "the slow run to reach its sleepy node")
    return tid, run["run_id"]


async def _not_found(coro: Any) -> None:
    with pytest.raises(httpx.HTTPStatusError) as exc:
        await coro
    assert exc.value.response.status_code == 404


# ---- human in the loop ------------------------------------------------------------------
async def test_interrupt_then_resume(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    result = await client.runs.wait(tid, "approval", input={"steps": []})
    assert result["steps"] == ["prepare"]
    (intr,) = result["__interrupt__"]
    assert intr["value"] == {"question": "approve?", "steps": ["prepare"]}
    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted"
    (task_interrupts,) = thread["interrupts"].values()
    assert task_interrupts[0]["id"] == intr["id"]
    state = await client.threads.get_state(tid)
    assert state["next"] == ["ask"]

    result = await client.runs.wait(tid, "approval", command={"resume": "yes"})
    assert result == {"steps": ["prepare", "answer:yes", "finish"]}
    thread = await client.threads.get(tid)
    assert thread["status"] == "idle" and thread["interrupts"] == {}
    assert thread["values"] == result


def test_interrupt_and_resume_with_sync_client(sync_client: Any) -> None:
    tid = sync_client.threads.create()["thread_id"]
    first = sync_client.runs.wait(tid, "approval", input={"steps": ["s"]})
    assert "__interrupt__" in first
    final = sync_client.runs.wait(tid, "approval", command={"resume": 42})
    assert final == {"steps": ["s", "prepare", "answer:42", "finish"]}


@pytest.mark.parametrize(("where", "node"), [("interrupt_before", "b"), ("interrupt_after", "a")])
async def test_static_interrupts_then_resume_with_none(client: Any, where: str, node: str) -> None:
    tid = (await client.threads.create())["thread_id"]
    paused = await client.runs.wait(tid, "three_steps", input={"steps": []}, **{where: [node]})
    assert paused == {"steps": ["a"]}
    assert (await client.threads.get(tid))["status"] == "interrupted"
    assert (await client.threads.get_state(tid))["next"] == ["b"]
    final = await client.runs.wait(tid, "three_steps", input=None)
    assert final == {"steps": ["a", "b", "c"]}
    assert (await client.threads.get(tid))["status"] == "idle"


# ---- time travel --------------------------------------------------------------------------
async def test_fork_from_an_earlier_checkpoint(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "three_steps", input={"steps": []})
    history = await client.threads.get_history(tid)
    assert [h["next"] for h in history] == [[], ["c"], ["b"], ["a"], ["__start__"]]
    first_end = history[0]["checkpoint"]["checkpoint_id"]
    after_a = next(h for h in history if h["next"] == ["b"])
    cp_id = after_a["checkpoint"]["checkpoint_id"]

    # Replay from "after a" (input None): b and c run again on a new branch.
    replay = await client.runs.wait(tid, "three_steps", input=None, checkpoint_id=cp_id)
    assert replay == {"steps": ["a", "b", "c"]}
    history = await client.threads.get_history(tid, limit=20)
    parents = {h["checkpoint"]["checkpoint_id"]: (h["parent_checkpoint"] or {}).get("checkpoint_id")
               for h in history}
    branch, cur = [], history[0]["checkpoint"]["checkpoint_id"]
    while cur:
        branch.append(cur)
        cur = parents[cur]
    assert cp_id in branch and first_end not in branch
    assert history[0]["checkpoint"]["checkpoint_id"] != first_end

    # With new input at the same checkpoint (given as a `checkpoint` dict): a fresh pass.
    fork = await client.runs.wait(
        tid, "three_steps", input={"steps": ["x"]},
        checkpoint={"thread_id": tid, "checkpoint_ns": "", "checkpoint_id": cp_id},
    )
    assert fork == {"steps": ["a", "x", "a", "b", "c"]}
    assert (await client.threads.get(tid))["values"] == fork


async def test_update_state_as_node_then_continue(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "three_steps", input={"steps": []}, interrupt_after=["a"])
    # Written as if node `b` had run: the graph continues with `c`.
    await client.threads.update_state(tid, {"steps": ["human"]}, as_node="b")
    state = await client.threads.get_state(tid)
    assert state["values"] == {"steps": ["a", "human"]} and state["next"] == ["c"]
    final = await client.runs.wait(tid, "three_steps", input=None)
    assert final == {"steps": ["a", "human", "c"]}


# ---- multitask strategies on a busy thread ------------------------------------------------
async def test_multitask_reject(client: Any) -> None:
    tid, rid = await _busy_slow_run(client)
    assert (await client.threads.get(tid))["status"] == "busy"
    with pytest.raises(httpx.HTTPStatusError) as exc:
        await client.runs.create(tid, "slow", input={"delay": 0}, multitask_strategy="reject")
    assert exc.value.response.status_code == 409
    await client.runs.cancel(tid, rid, wait=True)
    assert len(await client.runs.list(tid)) == 1


async def test_multitask_enqueue_runs_in_order(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    r1 = await client.runs.create(tid, "slow", input={"delay": 1.0, "marker": "1"})
    r2 = await client.runs.create(tid, "slow", input={"delay": 0.05, "marker": "2"},
                                  multitask_strategy="enqueue")
    assert (await client.runs.get(tid, r2["run_id"]))["status"] == "pending"  # queued behind r1
    final = await client.runs.join(tid, r2["run_id"])
    assert final["steps"] == ["first", "slept:1", "first", "slept:2"]
    for r in (r1, r2):
        assert (await client.runs.get(tid, r["run_id"]))["status"] == "success"


async def test_multitask_interrupt(client: Any) -> None:
    tid, r1 = await _busy_slow_run(client)
    r2 = await client.runs.create(tid, "slow", input={"delay": 0.05, "marker": "2"},
                                  multitask_strategy="interrupt")
    final = await client.runs.join(tid, r2["run_id"])
    # The interrupted run keeps what it had done (`first`).
    assert final["steps"] == ["first", "first", "slept:2"]
    assert (await client.runs.get(tid, r1))["status"] == "interrupted"
    assert (await client.runs.get(tid, r2["run_id"]))["status"] == "success"


async def test_multitask_rollback(client: Any) -> None:
    tid, r1 = await _busy_slow_run(client)
    r2 = await client.runs.create(tid, "slow", input={"delay": 0.05, "marker": "2"},
                                  multitask_strategy="rollback")
    final = await client.runs.join(tid, r2["run_id"])
    assert final["steps"] == ["first", "slept:2"]
    await _not_found(client.runs.get(tid, r1))
    history = await client.threads.get_history(tid, limit=50)
    assert history and all(h["metadata"].get("run_id") != r1 for h in history)
    assert [r["run_id"] for r in await client.runs.list(tid)] == [r2["run_id"]]


# ---- cancel -------------------------------------------------------------------------------
async def test_cancel_interrupt_and_wait(client: Any) -> None:
    tid, rid = await _busy_slow_run(client)
    await client.runs.cancel(tid, rid, wait=True, action="interrupt")
    assert (await client.runs.get(tid, rid))["status"] == "interrupted"
    thread = await client.threads.get(tid)
    assert thread["status"] == "idle"
    assert thread["values"]["steps"] == ["first"]
    assert (await client.runs.join(tid, rid))["steps"] == ["first"]
    with pytest.raises(httpx.HTTPStatusError) as exc:  # already finished
        await client.runs.cancel(tid, rid)
    assert exc.value.response.status_code == 409


async def test_cancel_rollback_and_wait(client: Any) -> None:
    tid, rid = await _busy_slow_run(client)
    await client.runs.cancel(tid, rid, wait=True, action="rollback")
    await _not_found(client.runs.get(tid, rid))
    assert await client.threads.get_history(tid) == []
    thread = await client.threads.get(tid)
    assert thread["status"] == "idle"


async def test_wait_with_on_disconnect_cancel(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    waiter = asyncio.ensure_future(client.runs.wait(
        tid, "slow", input={"delay": LONG}, on_disconnect="cancel"
    ))

    async def sleeping() -> bool:
        return (await client.threads.get_state(tid))["values"].get("steps") == ["first"]

    await _until(sleeping, "the run to start sleeping")
    waiter.cancel()  # the client hangs up
    with pytest.raises(asyncio.CancelledError):
        await waiter
    (run,) = await client.runs.list(tid)
    assert (await _status(client, tid, run["run_id"], "interrupted", "success"))["status"] == (
        "interrupted"
    )


async def test_cancel_many_by_thread_and_by_run_ids(client: Any) -> None:
    tid_a, ra = await _busy_slow_run(client, "a")
    queued = await client.runs.create(tid_a, "slow", input={"delay": LONG})
    tid_b, rb = await _busy_slow_run(client, "b")
    await client.runs.cancel_many(thread_id=tid_a)
    await client.runs.cancel_many(run_ids=[rb])
    for tid, rid in ((tid_a, ra), (tid_a, queued["run_id"]), (tid_b, rb)):
        assert (await _status(client, tid, rid, "interrupted"))["status"] == "interrupted"


async def test_cancel_many_by_status_on_own_server(fresh_server: Any) -> None:
    from langgraph_sdk import get_client

    fresh_server.start()
    client = get_client(url=fresh_server.url)
    try:
        runs = [await client.runs.create(None, "three_steps", input={}, after_seconds=60)
                for _ in range(2)]
        await client.runs.cancel_many(status="pending")
        for r in runs:
            assert (await client.runs.get(r["thread_id"], r["run_id"]))["status"] == "interrupted"
    finally:
        await client.aclose()


# ---- join, list, get, delete, delayed runs ------------------------------------------------
async def test_join_list_get_delete(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    r1 = await client.runs.create(tid, "three_steps", input={"steps": []}, metadata={"n": 1})
    assert r1["status"] == "pending" and r1["thread_id"] == tid
    assert await client.runs.join(tid, r1["run_id"]) == {"steps": ["a", "b", "c"]}
    r2 = await client.runs.create(tid, "three_steps", input={"steps": []})
    await client.runs.join(tid, r2["run_id"])

    runs = await client.runs.list(tid)
    assert [r["run_id"] for r in runs] == [r2["run_id"], r1["run_id"]]  # newest first
    assert {r["status"] for r in runs} == {"success"}
    assert [r["run_id"] for r in await client.runs.list(tid, limit=1, offset=1)] == [r1["run_id"]]
    assert await client.runs.list(tid, status="error") == []
    got = await client.runs.get(tid, r1["run_id"])
    assert got["metadata"] == {"n": 1} and got["assistant_id"] == r1["assistant_id"]
    other = (await client.threads.create())["thread_id"]
    await _not_found(client.runs.get(other, r1["run_id"]))  # a run belongs to its thread

    await client.runs.delete(tid, r1["run_id"])
    await _not_found(client.runs.get(tid, r1["run_id"]))
    assert [r["run_id"] for r in await client.runs.list(tid)] == [r2["run_id"]]


async def test_delete_active_run_is_refused(client: Any) -> None:
    tid, rid = await _busy_slow_run(client)
    with pytest.raises(httpx.HTTPStatusError) as exc:
        await client.runs.delete(tid, rid)
    assert exc.value.response.status_code == 409
    await client.runs.cancel(tid, rid, wait=True)


async def test_after_seconds_delays_the_start(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "three_steps", input={"steps": []}, after_seconds=2)
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "pending"
    assert await client.threads.get_history(tid) == []
    assert await client.runs.join(tid, run["run_id"]) == {"steps": ["a", "b", "c"]}
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"


# ---- stateless, batch, missing threads ----------------------------------------------------
async def test_stateless_run_deletes_its_thread(client: Any) -> None:
    created: list[Any] = []
    result = await client.runs.wait(None, "three_steps", input={"steps": []},
                                    on_completion="delete", on_run_created=created.append)
    assert result == {"steps": ["a", "b", "c"]}
    (meta,) = created
    await _not_found(client.threads.get(meta["thread_id"]))


async def test_stateless_run_keeps_its_thread(client: Any) -> None:
    created: list[Any] = []
    result = await client.runs.wait(None, "three_steps", input={"steps": []},
                                    on_completion="keep", on_run_created=created.append)
    thread = await client.threads.get(created[0]["thread_id"])
    assert thread["values"] == result == {"steps": ["a", "b", "c"]}
    assert thread["status"] == "idle"
    assert (await client.runs.get(thread["thread_id"], created[0]["run_id"]))["status"] == "success"


async def test_create_batch(client: Any) -> None:
    runs = await client.runs.create_batch([
        # `keep`: the default (`delete`) would remove thread and run before the join.
        {"assistant_id": "three_steps", "input": {"steps": ["one"]}, "on_completion": "keep"},
        {"assistant_id": "plain", "input": {"text": "two"}, "on_completion": "keep"},
    ])
    assert len(runs) == 2 and runs[0]["thread_id"] != runs[1]["thread_id"]
    first = await client.runs.join(runs[0]["thread_id"], runs[0]["run_id"])
    second = await client.runs.join(runs[1]["thread_id"], runs[1]["run_id"])
    assert first == {"steps": ["one", "a", "b", "c"]}
    assert second == {"echo": "two", "env": "1"}


async def test_if_not_exists(client: Any) -> None:
    tid = str(uuid.uuid4())
    await _not_found(client.runs.wait(tid, "three_steps", input={"steps": []}))
    result = await client.runs.wait(tid, "three_steps", input={"steps": []}, if_not_exists="create")
    assert result == {"steps": ["a", "b", "c"]}
    thread = await client.threads.get(tid)
    assert thread["values"] == result and thread["metadata"]["graph_id"] == "three_steps"


# ---- failures -----------------------------------------------------------------------------
async def test_failing_graph(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    result = await client.runs.wait(tid, "failing", input={"steps": []}, raise_error=False)
    assert result == {"__error__": {"error": "ValueError", "message": "node exploded on purpose"}}
    (run,) = await client.runs.list(tid)
    assert run["status"] == "error"
    thread = await client.threads.get(tid)
    assert thread["status"] == "error"
    assert thread["values"] == {"steps": ["ok"]}  # the state of the last checkpoint
    with pytest.raises(Exception, match="ValueError: node exploded on purpose"):
        await client.runs.wait(tid, "failing", input={"steps": []})
    joined = await client.runs.join(tid, run["run_id"])
    assert joined["__error__"]["error"] == "ValueError"


# ---- webhooks -----------------------------------------------------------------------------
@pytest.fixture
def webhook_listener() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append({"path": self.path, "body": json.loads(body)})
            self.send_response(200)
            self.end_headers()

    with serve_http(Handler) as base:
        yield f"{base}/hook", received


async def test_webhook_posts_the_finished_run(
    client: Any, webhook_listener: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook_listener
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "three_steps", input={"steps": []}, webhook=url,
                                   metadata={"who": "hook"})
    await client.runs.join(tid, run["run_id"])

    async def arrived() -> bool:
        return bool(received)

    await _until(arrived, "the webhook POST")
    (hook,) = received
    body = hook["body"]
    assert hook["path"] == "/hook"
    assert body["run_id"] == run["run_id"] and body["thread_id"] == tid
    assert body["status"] == "success"
    assert body["values"] == {"steps": ["a", "b", "c"]}
    assert body["metadata"] == {"who": "hook"}
    assert body["assistant_id"] == run["assistant_id"]
    assert body["run_started_at"] and body["run_ended_at"] and body["webhook_sent_at"]
    assert "tenant_id" not in body and "worker_id" not in body  # no internal columns


async def test_webhook_reports_errors(
    client: Any, webhook_listener: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook_listener
    result = await client.runs.wait(None, "failing", input={}, webhook=url, raise_error=False)
    assert "__error__" in result

    async def arrived() -> bool:
        return bool(received)

    await _until(arrived, "the webhook POST")
    body = received[0]["body"]
    assert body["status"] == "error"
    assert body["error"] == "node exploded on purpose"
    assert body["values"] == {"steps": ["ok"]}


# ---- other graph kinds --------------------------------------------------------------------
async def test_plain_functional_and_factory_graphs(client: Any) -> None:
    assert await client.runs.wait(None, "plain", input={"text": "hi"}) == {"echo": "hi", "env": "1"}
    assert await client.runs.wait(None, "functional", input={"x": 21}) == {"doubled": 42}
    tid = (await client.threads.create())["thread_id"]
    made = await client.runs.wait(tid, "factory", input={"steps": []},
                                  config={"configurable": {"suffix": "zz"}})
    assert made == {"steps": ["made_zz"]}
    assert await client.runs.wait(None, "factory", input={"steps": []}) == {"steps": ["made_plain"]}


@pytest.mark.parametrize("durability", ["sync", "async", "exit"])
async def test_every_durability_leaves_the_runs_state_and_history(
    client: Any, durability: str,
) -> None:
    """Each durability mode, twice on one thread: the run's answer, the thread's state and
    values and its history agree (on PostgreSQL the last checkpoint commits with the run's
    outcome), and the second run continues the first's state."""
    tid = (await client.threads.create())["thread_id"]
    for round_, expected in enumerate((["a", "b", "c"], ["a", "b", "c"] * 2), 1):
        out = await client.runs.wait(tid, "three_steps", input={"steps": []},
                                     durability=durability)
        assert out["steps"] == expected, (round_, out)
        state = await client.threads.get_state(tid)
        assert state["values"]["steps"] == expected and state["next"] == []
        thread = await client.threads.get(tid)
        assert thread["status"] == "idle" and thread["values"]["steps"] == expected
        history = await client.threads.get_history(tid, limit=50)
        assert history[0]["checkpoint"]["checkpoint_id"] == \
            state["checkpoint"]["checkpoint_id"]
        # sync and async: input + start + three steps per run; exit: one per run.
        per_run = 1 if durability == "exit" else 5
        assert len(history) == per_run * round_, [h["metadata"]["source"] for h in history]
        for child, parent in itertools.pairwise(history):
            assert child["parent_checkpoint"]["checkpoint_id"] == \
                parent["checkpoint"]["checkpoint_id"]
