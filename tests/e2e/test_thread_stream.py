"""Thread streaming (langgraph-sdk ``client.threads.stream``) against a real ``dockyard dev``:
commands, SSE and WebSocket event streams, resumption by ``since``, errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

pytestmark = pytest.mark.timeout(60)


async def command(http: httpx.AsyncClient, tid: str, method: str, params: dict[str, Any],
                  cmd_id: int = 1) -> dict[str, Any]:
    r = await http.post(f"/threads/{tid}/commands",
                        json={"id": cmd_id, "method": method, "params": params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def sse_events(http: httpx.AsyncClient, tid: str, body: dict[str, Any]
                     ) -> AsyncIterator[dict[str, Any]]:
    async with http.stream("POST", f"/threads/{tid}/stream/events", json=body) as resp:
        assert resp.status_code == 200, await resp.aread()
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                yield json.loads(line[6:])


def is_root_end(ev: dict[str, Any]) -> bool:
    p = ev["params"]
    return (ev["method"] == "lifecycle" and p["namespace"] == []
            and p["data"]["event"] in ("completed", "failed", "interrupted"))


async def until_root_end(http: httpx.AsyncClient, tid: str, body: dict[str, Any]
                         ) -> list[dict[str, Any]]:
    out = []
    async for ev in sse_events(http, tid, body):
        out.append(ev)
        if is_root_end(ev):
            break
    return out


@pytest.fixture
async def http(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        yield c


async def test_sdk_thread_stream_interrupt_respond_output(client: Any) -> None:
    async with client.threads.stream(assistant_id="approval") as thread:
        await thread.run.start(input={"steps": []})
        snapshots = [s async for s in thread.values]
        assert thread.interrupted
        # The pause arrives on the SDK's lifecycle connection and ends this iteration, which
        # may be before this connection delivered every snapshot: only their shape is certain.
        assert snapshots and all(s.get("steps", []) in ([], ["prepare"]) for s in snapshots)
        [pending] = thread.interrupts
        assert pending["value"] == {"question": "approve?", "steps": ["prepare"]}
        await thread.run.respond("yes")
        final = await thread.output
    assert final["steps"] == ["prepare", "answer:yes", "finish"]
    state = await client.threads.get_state(thread.thread_id)
    assert state["values"]["steps"] == ["prepare", "answer:yes", "finish"] and not state["next"]


async def test_sdk_messages_stream_tokens(client: Any) -> None:
    async with client.threads.stream(assistant_id="chat") as thread:
        await thread.run.start(input={"messages": [{"role": "user", "content": "hi"}]})
        # One stream per message; the iteration ends with the run. (Tokens are dispatched as
        # the projection is iterated, so a stream's text is read after collecting them.)
        streams = [s async for s in thread.messages]
        assert len(streams) == 1 and streams[0].node == "reply"
        assert "".join([t async for t in streams[0].text]) == "hello there from the fake model"
        final = await thread.output
    # LangGraph's v3 stream has chat models answer in content blocks.
    content = final["messages"][-1]["content"]
    assert content == [{"type": "text", "text": "hello there from the fake model", "index": 0}]


async def test_lifecycle_of_a_subgraph_is_on_its_namespace(http: httpx.AsyncClient) -> None:
    tid = str(uuid.uuid4())
    started = await command(http, tid, "run.start", {"assistant_id": "nested",
                                                     "input": {"steps": []}})
    assert started["type"] == "success" and started["result"]["run_id"]
    events = await until_root_end(http, tid, {"channels": ["lifecycle"]})
    shapes = [(e["params"]["namespace"][:1] and e["params"]["namespace"][0].split(":")[0],
               e["params"]["data"]["event"]) for e in events]
    assert shapes[0] == ([], "running")
    assert ("child", "started") in shapes and ("child", "completed") in shapes
    assert shapes[-1] == ([], "completed")
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(e["event_id"] for e in events)) == len(events)
    # A namespace filter with depth 0 keeps only the child's own events.
    child_ns = next(e["params"]["namespace"] for e in events if e["params"]["namespace"])
    body = {"channels": ["lifecycle", "values"], "namespaces": [["child"]], "depth": 0,
            "since": started["meta"]["applied_through_seq"]}
    got = []
    async for ev in sse_events(http, tid, body):
        got.append(ev)
        if ev["method"] == "lifecycle" and ev["params"]["data"]["event"] == "completed":
            break
    assert {tuple(e["params"]["namespace"]) for e in got} == {tuple(child_ns)}
    assert any(e["method"] == "values" and e["params"]["data"]["steps"][-2:] == ["inner_1", "inner_2"]
               for e in got)


async def test_resume_by_since_loses_and_repeats_nothing(http: httpx.AsyncClient) -> None:
    tid = str(uuid.uuid4())
    started = await command(http, tid, "run.start", {
        "assistant_id": "slow", "input": {"steps": [], "delay": 1.0}})
    base = started["meta"]["applied_through_seq"]
    body = {"channels": ["custom", "values", "lifecycle"]}
    # A client reads a few events, its connection drops, it reconnects after the last seq.
    first: list[dict[str, Any]] = []
    async for ev in sse_events(http, tid, {**body, "since": base}):
        first.append(ev)
        if len(first) == 5:
            break
    rest = await until_root_end(http, tid, {**body, "since": first[-1]["seq"]})
    # Another client reads the whole run in one go.
    whole = await until_root_end(http, tid, {**body, "since": base})
    assert [e["event_id"] for e in first + rest] == [e["event_id"] for e in whole]
    assert len(whole) > 10 and whole[-1]["params"]["data"]["event"] == "completed"


async def test_websocket_subscribe_command_and_events(url: str, http: httpx.AsyncClient) -> None:
    tid = str(uuid.uuid4())
    await http.post("/threads", json={"thread_id": tid})
    ws_url = url.replace("http://", "ws://") + f"/threads/{tid}/stream/events"
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"id": 1, "method": "subscription.subscribe",
                                  "params": {"channels": ["lifecycle", "values", "input"]}}))
        ack = json.loads(await ws.recv())
        assert ack["type"] == "success" and ack["id"] == 1 and ack["result"]["subscription_id"]
        await ws.send(json.dumps({"id": 2, "method": "run.start",
                                  "params": {"assistant_id": "approval", "input": {"steps": []}}}))
        frames: list[dict[str, Any]] = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            frames.append(frame)
            if frame.get("type") == "event" and is_root_end(frame):
                break
        reply = next(f for f in frames if f.get("id") == 2)
        assert reply["type"] == "success" and reply["result"]["run_id"]
        [req] = [f for f in frames if f.get("method") == "input.requested"]
        assert req["params"]["data"]["payload"] == {"question": "approve?", "steps": ["prepare"]}
        assert frames[-1]["params"]["data"]["event"] == "interrupted"
        # Answer over the socket; the resumed run's events arrive on the same subscription.
        await ws.send(json.dumps({"id": 3, "method": "input.respond", "params": {
            "interrupt_id": req["params"]["data"]["interrupt_id"], "namespace": [],
            "response": "ok"}}))
        values = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if frame.get("method") == "values":
                values.append(frame["params"]["data"])
            if frame.get("type") == "event" and is_root_end(frame):
                assert frame["params"]["data"]["event"] == "completed"
                break
        assert values[-1]["steps"] == ["prepare", "answer:ok", "finish"]
        await ws.send(json.dumps({"id": 4, "method": "subscription.unsubscribe",
                                  "params": {"subscription_id": "nope"}}))
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["error"] == "no_such_subscription"


async def test_failed_and_cancelled_runs_end_with_failed_lifecycle(
    client: Any, http: httpx.AsyncClient
) -> None:
    async with client.threads.stream(assistant_id="failing") as thread:
        await thread.run.start(input={"steps": []})
        with pytest.raises(RuntimeError, match="Run errored"):
            await thread.output
    tid = str(uuid.uuid4())
    started = await command(http, tid, "run.start", {
        "assistant_id": "slow", "input": {"steps": [], "delay": 30}})
    run_id = started["result"]["run_id"]
    events = sse_events(http, tid, {"channels": ["lifecycle", "custom"],
                                    "since": started["meta"]["applied_through_seq"]})
    async for ev in events:
        if ev["method"] == "custom":  # it is running: cancel it
            r = await http.post(f"/threads/{tid}/runs/{run_id}/cancel")
            assert r.status_code == 202
        if is_root_end(ev):
            assert ev["params"]["data"] == {"event": "failed", "graph_name": "slow",
                                            "error": "run cancelled", "run_id": run_id}
            break


async def test_commands_answer_protocol_errors(http: httpx.AsyncClient) -> None:
    tid = str(uuid.uuid4())
    r = await http.post(f"/threads/{tid}/commands", json={"method": "run.start"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_argument"
    r = await http.post(f"/threads/{tid}/commands", content=b"{nope")
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    cases = [
        ("nope.nothing", {}, "unknown_command"),
        ("run.start", {}, "invalid_argument"),
        ("run.start", {"assistant_id": "approval", "bogus": 1}, "invalid_argument"),
        ("run.start", {"assistant_id": "approval", "langsmith_tracer": {}}, "not_supported"),
        ("run.start", {"assistant_id": "no_such_graph"}, "invalid_argument"),
        ("subscription.subscribe", {"channels": ["values"]}, "not_supported"),
    ]
    for method, params, code in cases:
        out = await command(http, tid, method, params)
        assert out["type"] == "error" and out["error"] == code, (method, params, out)
        assert out["message"]
    # input.respond to an interrupt the thread does not wait on
    done = await command(http, tid, "run.start", {"assistant_id": "three_steps",
                                                  "input": {"steps": []}})
    await until_root_end(http, tid, {"channels": ["lifecycle"],
                                     "since": done["meta"]["applied_through_seq"]})
    out = await command(http, tid, "input.respond", {"interrupt_id": "x", "namespace": [],
                                                     "response": 1})
    assert out["error"] == "no_such_interrupt"
    # The event stream's own input errors are HTTP errors before anything streams.
    r = await http.post(f"/threads/{tid}/stream/events", json={"channels": ["nope"]})
    assert r.status_code == 422 and "unsupported channel" in r.json()["detail"]
    r = await http.post(f"/threads/{tid}/stream/events", json={"channels": []})
    assert r.status_code == 422
    r = await http.post(f"/threads/{uuid.uuid4()}/stream/events", json={"channels": ["values"]})
    assert r.status_code == 404
    r = await http.post(f"/threads/{tid}/stream/events",
                        json={"channels": ["values"], "since": -1})
    assert r.status_code == 422


async def test_state_commands(http: httpx.AsyncClient) -> None:
    tid = str(uuid.uuid4())
    started = await command(http, tid, "run.start", {"assistant_id": "three_steps",
                                                     "input": {"steps": []}})
    await until_root_end(http, tid, {"channels": ["lifecycle"],
                                     "since": started["meta"]["applied_through_seq"]})
    state = await command(http, tid, "state.get", {"namespace": [], "keys": ["steps"]})
    assert state["result"]["values"] == {"steps": ["a", "b", "c"]}
    listed = await command(http, tid, "state.listCheckpoints", {"limit": 10})
    cps = listed["result"]["checkpoints"]
    assert [c["step"] for c in cps] == [3, 2, 1, 0, -1]
    assert cps[0]["id"] == state["result"]["checkpoint"]["id"]
    # Fork from the checkpoint after "a" with new input: the branch re-runs b and c.
    after_a = next(c for c in cps if c["step"] == 1)
    forked = await command(http, tid, "state.fork", {"checkpoint_id": after_a["id"]})
    assert forked["type"] == "success" and forked["result"]["thread_id"] == tid
    await until_root_end(http, tid, {"channels": ["lifecycle"],
                                     "since": forked["meta"]["applied_through_seq"]})
    state = await command(http, tid, "state.get", {"namespace": []})
    assert state["result"]["values"]["steps"] == ["a", "b", "c"]
    missing = await command(http, tid, "state.fork", {"checkpoint_id": str(uuid.uuid4())})
    assert missing["error"] == "no_such_checkpoint"


async def test_join_thread_stream_follows_every_run_and_resumes(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    parts: list[Any] = []

    async def join(last_event_id: str | None = None, into: list[Any] | None = None,
                   runs: int = 2) -> None:
        out = parts if into is None else into
        done = 0
        async for part in await client.threads.join_stream(tid, last_event_id=last_event_id):
            out.append(part)
            if part.event == "metadata" and part.data.get("status") == "run_done":
                done += 1
                if done == runs:
                    return

    joiner = asyncio.create_task(join())
    await asyncio.sleep(0.3)  # the joiner waits for runs that do not exist yet
    for marker in ("one", "two"):
        run = await client.runs.create(tid, "three_steps", input={"steps": [marker]},
                                       stream_mode=["values", "updates"])
        await client.runs.join(tid, run["run_id"])
    await asyncio.wait_for(joiner, 30)
    run_ids = [p.data["run_id"] for p in parts if p.event == "metadata"
               and p.data.get("status") == "run_done"]
    assert len(run_ids) == 2 and run_ids[0] != run_ids[1]
    values = [p.data for p in parts if p.event == "values"]
    assert values[-1]["steps"][-3:] == ["a", "b", "c"] and "two" in values[-1]["steps"]
    # Every id names its run; resuming after a mid-stream id continues there, across runs.
    assert all(p.id.split("/")[0] in run_ids for p in parts)
    k = next(i for i, p in enumerate(parts) if p.event == "updates")
    rest: list[Any] = []
    await asyncio.wait_for(join(parts[k].id, rest, runs=2), 30)
    assert [p.id for p in rest] == [p.id for p in parts[k + 1:]]
    # lifecycle: only the start and end of each run.
    thread2 = await client.threads.create()
    life: list[Any] = []

    async def lifecycle() -> None:
        async for part in await client.threads.join_stream(thread2["thread_id"],
                                                           stream_mode="lifecycle"):
            life.append(part)
            if part.data.get("status") == "run_done":
                return

    task = asyncio.create_task(lifecycle())
    await asyncio.sleep(0.3)
    await client.runs.wait(thread2["thread_id"], "three_steps", input={"steps": []})
    await asyncio.wait_for(task, 30)
    assert {p.event for p in life} == {"metadata"} and len(life) == 2


async def test_join_thread_stream_errors(http: httpx.AsyncClient) -> None:
    r = await http.get(f"/threads/{uuid.uuid4()}/stream")
    assert r.status_code == 404
    tid = (await http.post("/threads", json={})).json()["thread_id"]
    r = await http.get(f"/threads/{tid}/stream", params={"stream_mode": "values"})
    assert r.status_code == 422 and "stream_mode" in r.json()["detail"]
    r = await http.get(f"/threads/{tid}/stream", headers={"Last-Event-ID": "7"})
    assert r.status_code == 422


async def test_join_thread_stream_state_updates(client: Any) -> None:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "three_steps", input={"steps": []})
    got: list[Any] = []

    async def watch() -> None:
        async for part in await client.threads.join_stream(tid, stream_mode="state_update"):
            got.append(part)
            return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    await client.threads.update_state(tid, {"steps": ["edited"]})
    await asyncio.wait_for(task, 30)
    assert got[0].event == "state_update" and got[0].data["values"] == {"steps": ["edited"]}
    assert got[0].data["checkpoint"]["checkpoint_id"]
