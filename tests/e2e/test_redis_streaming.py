"""A `dockyard dev` server whose event bus is Redis (DOCKYARD_REDIS_URL), driven by langgraph-sdk:
streaming, join-stream with Last-Event-ID, wait and cancel all go through Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Server, make_server
from tests.redis_support import require_redis

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    url = require_redis()
    srv = make_server(tmp_path_factory.mktemp("dockyard-redis"), DOCKYARD_REDIS_URL=url)
    srv.start()
    yield srv, url
    srv.stop()
    assert "Traceback" not in srv.logs(), srv.logs()


@pytest.fixture
async def client(redis_server: tuple[Server, str]) -> AsyncIterator[Any]:
    from langgraph_sdk import get_client

    c = get_client(url=redis_server[0].url)
    yield c
    await c.aclose()


@pytest.fixture
def rds(redis_server: tuple[Server, str]) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server[1]) as c:
        yield c


async def test_stream_events_carry_redis_stream_ids(client: Any, rds: redis.Redis) -> None:
    thread = await client.threads.create()
    parts = [p async for p in client.runs.stream(thread["thread_id"], "three_steps",
                                                 input={"steps": []}, stream_mode="values")]
    assert [p.event for p in parts] == ["metadata"] + ["values"] * 4 + ["end"]
    assert parts[-2].data == {"steps": ["a", "b", "c"]}
    ids = [tuple(int(x) for x in p.id.split("-")) for p in parts]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(len(i) == 2 for i in ids)
    run_id = parts[0].data["run_id"]
    key = f"dockyard:run:{run_id}:events"
    assert rds.exists(key) and 0 < rds.ttl(key) <= 600  # expires after the run
    assert rds.exists(f"dockyard:run:{run_id}:closed")


async def test_join_stream_resumes_after_last_event_id(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "slow", input={"delay": 0.3, "marker": "r"},
                                   stream_mode=["values", "custom"], stream_resumable=True)
    full = [p async for p in client.runs.join_stream(tid, run["run_id"])]
    assert full[0].event == "metadata" and full[-1].event == "end"
    assert {"values", "custom"} <= {p.event for p in full}
    for k in (0, 2, len(full) - 2):
        rest = [p async for p in client.runs.join_stream(tid, run["run_id"],
                                                         last_event_id=full[k].id)]
        assert [(p.id, p.event, p.data) for p in rest] == [(p.id, p.event, p.data) for p in full[k + 1:]]


async def test_join_stream_of_a_live_run_then_rejoin(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "slow", input={"delay": 1.0, "marker": "live"},
                                   stream_mode=["custom"], stream_resumable=True)
    first: list[Any] = []
    stream = client.runs.join_stream(tid, run["run_id"])
    async for part in stream:
        first.append(part)
        if len(first) == 4:
            break
    await stream.aclose()
    rest = [p async for p in client.runs.join_stream(tid, run["run_id"], last_event_id=first[-1].id)]
    ids = [p.id for p in first + rest]
    assert len(set(ids)) == len(ids) and rest[-1].event == "end"
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"


async def test_wait_returns_the_result_through_redis(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    assert await client.runs.wait(tid, "three_steps", input={"steps": []}) == {"steps": ["a", "b", "c"]}


async def test_cancel_reaches_the_executor_through_redis(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "slow", input={"delay": 30, "marker": "c"},
                                   stream_mode=["custom"], stream_resumable=True)
    stream = client.runs.join_stream(tid, run["run_id"])
    async for part in stream:
        if part.event == "custom":  # the sleepy node is ticking: `first` is done
            break
    await stream.aclose()
    started = time.monotonic()
    await client.runs.cancel(tid, run["run_id"], wait=True, action="interrupt")
    assert time.monotonic() - started < 5  # not the 30 s sleep: the executor got the cancel
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    assert (await client.runs.join(tid, run["run_id"]))["steps"] == ["first"]
