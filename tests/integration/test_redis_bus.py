"""The event bus contract, run against both buses, and what only the Redis bus has to do.

Contract tests take a ``pair`` of buses: the same ``InProcessBus`` twice, or two ``RedisBus``
instances on one key prefix (two processes: an API replica and a worker). Each Redis test has
its own prefix, deleted afterwards. Redis is ``DOCKYARD_TEST_REDIS_URL`` (see redis_support).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dockyard.errors import EventBusUnavailable
from dockyard.streams.base import Event, EventBus
from dockyard.streams.memory import InProcessBus
from dockyard.streams.redis import RedisBus
from tests.redis_support import delete_prefix, require_redis, unique_prefix

Pair = tuple[EventBus, EventBus]


def new_run() -> str:
    return str(uuid.uuid4())


def id_key(event_id: str) -> tuple[int, ...]:
    """Ids are opaque but ordered: ``"7"`` in-process, ``"<ms>-<seq>"`` on Redis."""
    return tuple(int(part) for part in event_id.split("-"))


async def collect(events: AsyncIterator[Event], timeout: float = 10.0) -> list[Event]:
    async with asyncio.timeout(timeout):
        return [ev async for ev in events]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def publish_all(bus: EventBus, run_id: str, n: int, *, close: bool = True) -> list[str]:
    ids = [await bus.publish(run_id, "custom", str(i).encode()) for i in range(n)]
    if close:
        await bus.publish(run_id, "end", b"null")
        await bus.close(run_id)
    return ids


def round_trips(bus: RedisBus) -> list[str]:
    """The ops of the bus's Redis round trips from now on (``_retrying`` wraps each)."""
    calls: list[str] = []
    real = bus._retrying

    async def counting(op: str, run_id: str, call: Any) -> Any:
        calls.append(op)
        return await real(op, run_id, call)

    bus._retrying = counting  # type: ignore[method-assign]
    return calls


async def outbox_written(bus: RedisBus) -> None:
    """Until the bus's outbox is written (or its write failed), lingering sends included."""
    while bus._outbox or (bus._flusher is not None and not bus._flusher.done()):
        await asyncio.sleep(0.005)


class RedisBuses:
    """Makes RedisBus instances on one test's prefix; closes them and deletes the keys."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = unique_prefix()
        self.buses: list[RedisBus] = []

    def new(self, *, url: str | None = None, **options: Any) -> RedisBus:
        name = f"{self.prefix}-{len(self.buses)}"
        bus = RedisBus.from_url(url or self.url, prefix=self.prefix, client_name=name, **options)
        self.buses.append(bus)
        return bus

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def kill_connections(self, bus: RedisBus) -> int:
        """Drop every connection of ``bus`` (what a Redis restart does to a client)."""
        name = bus._client.connection_pool.connection_kwargs["client_name"]
        killed = 0
        with self.client() as c:
            for info in c.client_list():
                if info.get("name") == name:
                    killed += c.client_kill_filter(_id=info["id"])
        return killed

    async def aclose(self) -> None:
        for bus in self.buses:
            await bus.aclose()
        delete_prefix(self.url, self.prefix)


@pytest.fixture
async def rbuses() -> AsyncIterator[RedisBuses]:
    buses = RedisBuses(require_redis())
    yield buses
    await buses.aclose()


@pytest.fixture(params=["memory", "redis"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    if request.param == "memory":
        bus = InProcessBus()
        yield bus, bus
        return
    buses = RedisBuses(require_redis())
    try:
        yield buses.new(), buses.new()
    finally:
        await buses.aclose()


# ---- the contract: both buses ---------------------------------------------------------------
async def test_replay_from_the_start_in_order(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    ids = await publish_all(worker, run, 30)
    got = await collect(api.subscribe(run))
    assert [ev.data for ev in got] == [str(i).encode() for i in range(30)] + [b"null"]
    assert [ev.event for ev in got] == ["custom"] * 30 + ["end"]
    assert [ev.id for ev in got[:30]] == ids
    assert sorted(got, key=lambda ev: id_key(ev.id)) == got and len({ev.id for ev in got}) == 31


async def test_live_subscriber_follows_until_close(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    sub = asyncio.create_task(collect(api.subscribe(run)))
    await asyncio.sleep(0.05)  # subscribed to a run that has published nothing yet: waits
    assert not sub.done()
    for i in range(5):
        await worker.publish(run, "values", str(i).encode())
        await asyncio.sleep(0.01)
    assert not sub.done()
    await worker.close(run)
    assert [ev.data for ev in await sub] == [b"0", b"1", b"2", b"3", b"4"]


async def test_resume_after_every_last_event_id(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    await publish_all(worker, run, 8)
    full = await collect(api.subscribe(run))
    for k, ev in enumerate(full):
        rest = await collect(api.subscribe(run, last_event_id=ev.id))
        assert rest == full[k + 1:]


async def test_rejoin_with_last_event_id_while_live_loses_and_repeats_nothing(pair: Pair) -> None:
    worker, api = pair
    run = new_run()

    async def produce() -> None:
        for i in range(60):
            await worker.publish(run, "custom", str(i).encode())
            await asyncio.sleep(0.002)
        await worker.close(run)

    producer = asyncio.create_task(produce())
    first: list[Event] = []
    sub = api.subscribe(run)
    async for ev in sub:
        first.append(ev)
        if len(first) == 10:
            break
    await sub.aclose()  # type: ignore[attr-defined]  # the client dropped
    rest = await collect(api.subscribe(run, last_event_id=first[-1].id))
    await producer
    assert [ev.data for ev in first + rest] == [str(i).encode() for i in range(60)]


async def test_events_published_while_a_subscriber_is_suspended_are_not_lost(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    await worker.publish(run, "metadata", b"{}")
    sub = api.subscribe(run)
    first = await anext(sub)
    await worker.publish(run, "values", b"1")
    await worker.publish(run, "end", b"null")
    await worker.close(run)
    rest = await collect(sub)
    assert [first.event, *(ev.event for ev in rest)] == ["metadata", "values", "end"]


async def test_subscribers_see_the_same_sequence(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    subs = [asyncio.create_task(collect(bus.subscribe(run))) for bus in (worker, api, api)]
    await asyncio.sleep(0.05)
    await publish_all(worker, run, 20)
    a, b, c = [await s for s in subs]
    assert a == b == c and len(a) == 21


async def test_finish_publishes_the_last_events_then_closes(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    await worker.publish(run, "metadata", b"{}")
    await worker.finish(run, [("values", b"1"), ("end", b"null")])
    assert await api.is_closed(run)
    got = await collect(api.subscribe(run))
    assert [(ev.event, ev.data) for ev in got] == [
        ("metadata", b"{}"), ("values", b"1"), ("end", b"null")]


async def test_close_and_is_closed(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    assert not await api.is_closed(run)
    await worker.publish(run, "metadata", b"{}")
    assert not await api.is_closed(run)
    await worker.close(run)
    assert await api.is_closed(run)
    assert not await api.is_closed(new_run())


async def test_sends_keep_their_order_with_publishes_and_the_finish(pair: Pair) -> None:
    worker, api = pair
    runs = [new_run() for _ in range(3)]
    for run in runs:
        worker.register_control(run, lambda action: None)
    subs = [asyncio.create_task(collect(api.subscribe(run))) for run in runs]
    for i in range(20):
        await asyncio.gather(*(worker.send(run, "values", str(i).encode()) for run in runs))
    ids = [await worker.publish(run, "custom", b"published") for run in runs]
    for run in runs:
        await worker.send(run, "values", b"after")
        await worker.finish(run, [("end", b"null")])
        worker.unregister_control(run)
    for sub, event_id in zip(subs, ids, strict=True):
        got = await sub
        assert [ev.data for ev in got] == [
            *(str(i).encode() for i in range(20)), b"published", b"after", b"null"]
        assert got[20].id == event_id


async def test_wait_result_returns_the_result_of_the_finish(pair: Pair) -> None:
    worker, api = pair
    run, bare = new_run(), new_run()
    waiting = asyncio.create_task(api.wait_result(run))
    await worker.send(run, "values", b"{}")
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await worker.finish(run, [("__result__", b'{"values":1}'), ("end", b"null")])
    assert await asyncio.wait_for(waiting, 10) == b'{"values":1}'
    assert await api.wait_result(run) == b'{"values":1}'  # after the end too
    await worker.finish(bare, [("error", b"{}"), ("end", b"null")])
    assert await asyncio.wait_for(api.wait_result(bare), 10) is None


async def test_control_reaches_the_handler_of_the_runs_executor(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    received: list[str] = []
    worker.register_control(run, received.append)
    # As the executor does: register, then publish. Once a client can see the run's events,
    # a cancel must find the handler, wherever the run executes.
    await worker.publish(run, "metadata", b"{}")
    assert await api.send_control(run, "interrupt")
    await eventually(lambda: _true(received == ["interrupt"]))
    assert not await api.send_control(new_run(), "interrupt")  # nobody runs it
    worker.unregister_control(run)
    await eventually(lambda: _not(api.send_control(run, "rollback")))
    assert received == ["interrupt"]


async def test_async_control_handler(pair: Pair) -> None:
    worker, api = pair
    run = new_run()
    done = asyncio.Event()
    actions: list[str] = []

    async def handler(action: str) -> None:
        await asyncio.sleep(0)
        actions.append(action)
        done.set()

    worker.register_control(run, handler)
    await worker.publish(run, "metadata", b"{}")
    assert await api.send_control(run, "rollback")
    async with asyncio.timeout(5):
        await done.wait()
    assert actions == ["rollback"]
    worker.unregister_control(run)


async def _true(value: bool) -> bool:
    return value


async def _not(value: Awaitable[bool]) -> bool:
    return not await value


# ---- Redis only ---------------------------------------------------------------------------
async def test_event_ids_are_stream_ids_and_events_live_in_the_runs_stream(rbuses: RedisBuses) -> None:
    bus = rbuses.new()
    run = new_run()
    ids = await publish_all(bus, run, 3)
    assert all(len(i.split("-")) == 2 for i in ids)
    with rbuses.client() as c:
        entries = c.xrange(f"{rbuses.prefix}:run:{run}:events")
    assert [e[0].decode() for e in entries[:3]] == ids
    assert entries[-1][1] == {b"closed": b"1"}  # the terminal marker, never sent to clients


async def test_close_sets_a_ttl_and_publish_an_idle_ttl(rbuses: RedisBuses) -> None:
    bus = rbuses.new(closed_ttl=7, idle_ttl=3600, ttl_refresh=60)
    run = new_run()
    await bus.publish(run, "metadata", b"{}")
    with rbuses.client() as c:
        # At least the idle TTL after the last event, however late in the refresh period.
        assert 3600 < c.ttl(bus.events_key(run)) <= 3660
        await bus.close(run)
        assert 0 < c.ttl(bus.events_key(run)) <= 7
        assert 0 < c.ttl(bus.closed_key(run)) <= 7


async def test_the_idle_ttl_is_set_once_per_refresh_period_not_per_event(
    rbuses: RedisBuses,
) -> None:
    bus = rbuses.new(idle_ttl=3600, ttl_refresh=1)
    run = new_run()
    key = bus.events_key(run)
    with rbuses.client() as c:
        await bus.publish(run, "metadata", b"{}")
        assert c.ttl(key) > 3600
        c.persist(key)  # what an EXPIRE sent with the next events would undo
        await publish_all(bus, run, 3, close=False)
        assert c.ttl(key) == -1
        await asyncio.sleep(1.1)
        # The refresh is due: the next event sets the TTL again, so a stream whose worker
        # dies mid-run (no close) still expires.
        await bus.publish(run, "values", b"{}")
        assert 3600 < c.ttl(key) <= 3601
        c.persist(key)
        await bus.publish(run, "values", b"{}")
        assert c.ttl(key) == -1


async def test_each_process_sets_the_idle_ttl_of_a_stream_at_its_first_publish(
    rbuses: RedisBuses,
) -> None:
    # A thread's channel gets events from the workers of its successive runs.
    first, second = rbuses.new(idle_ttl=3600), rbuses.new(idle_ttl=3600)
    channel = new_run()
    key = first.events_key(channel)
    with rbuses.client() as c:
        await first.publish(channel, "values", b"{}")
        c.persist(key)
        await second.publish(channel, "values", b"{}")
        assert c.ttl(key) > 3600


async def test_after_a_connection_failure_the_next_publish_sets_the_idle_ttl_again(
    rbuses: RedisBuses,
) -> None:
    # Redis may have restarted without the keys; the next XADD recreates a stream with no TTL.
    bus = rbuses.new(idle_ttl=3600, ttl_refresh=3600)
    run = new_run()
    key = bus.events_key(run)
    await bus.publish(run, "metadata", b"{}")
    failures = [redis.ConnectionError("Connection reset by peer")]

    async def flaky() -> bool:
        if failures:
            raise failures.pop()
        return True

    assert await bus._retrying("ping", run, flaky)
    with rbuses.client() as c:
        c.persist(key)
        await bus.publish(run, "values", b"{}")
        assert c.ttl(key) > 3600


async def test_finish_appends_the_last_events_and_closes_in_one_round_trip(
    rbuses: RedisBuses,
) -> None:
    bus, api = rbuses.new(closed_ttl=7), rbuses.new()
    run = new_run()
    await bus.publish(run, "metadata", b"{}")
    sub = asyncio.create_task(collect(api.subscribe(run)))
    calls = round_trips(bus)
    await bus.finish(run, [("__result__", b'{"status":"success"}'), ("end", b"null")])
    assert calls == ["close"]
    assert [(ev.event, ev.data) for ev in await sub] == [
        ("metadata", b"{}"), ("__result__", b'{"status":"success"}'), ("end", b"null")]
    assert await api.is_closed(run)
    with rbuses.client() as c:
        assert 0 < c.ttl(bus.events_key(run)) <= 7


async def test_sends_of_runs_side_by_side_share_round_trips(rbuses: RedisBuses) -> None:
    bus, api = rbuses.new(), rbuses.new()
    runs = [new_run() for _ in range(5)]
    calls = round_trips(bus)
    for i in range(4):
        await asyncio.gather(*(bus.send(run, "values", str(i).encode()) for run in runs))
    await asyncio.gather(*(bus.finish(run, [("end", b"null")]) for run in runs))
    assert len(calls) < 25 / 2  # 25 commands' producers, in a few pipelines
    for run in runs:
        assert [ev.data for ev in await collect(api.subscribe(run))] == [
            b"0", b"1", b"2", b"3", b"null"]


async def test_sends_linger_to_share_a_round_trip_and_an_awaited_write_does_not(
    rbuses: RedisBuses,
) -> None:
    """A run's events sent in one step (a few ms apart) go in one pipeline; a publish is
    written at once, the sends before it first."""
    bus, api = rbuses.new(), rbuses.new()
    run = new_run()
    await bus.publish(run, "metadata", b"{}")  # the control channel is live from here on
    calls = round_trips(bus)
    for i in range(3):
        await bus.send(run, "values", str(i).encode())
        await asyncio.sleep(0)
    await asyncio.wait_for(outbox_written(bus), 5)
    assert calls == ["publish"]  # three sends, one round trip (named for the first's op)
    await bus.send(run, "values", b"3")
    await bus.publish(run, "values", b"4")  # does not linger: written when it returns
    assert calls == ["publish", "publish"]
    await bus.finish(run, [("end", b"null")])
    assert [ev.data for ev in await collect(api.subscribe(run))] == [
        b"{}", b"0", b"1", b"2", b"3", b"4", b"null"]


async def test_a_failed_send_is_raised_by_the_runs_next_send(rbuses: RedisBuses) -> None:
    bus = rbuses.new(url=f"redis://127.0.0.1:{_free_port()}/0", retry_seconds=0.2)
    run = new_run()
    await bus.send(run, "values", b"{}")  # queued: returns before any write
    await asyncio.wait_for(outbox_written(bus), 5)
    with pytest.raises(EventBusUnavailable):
        await bus.send(run, "values", b"{}")
    await bus.send(new_run(), "values", b"{}")  # another run's sends are not failed by it


async def test_wait_result_ends_when_the_run_is_closed_but_its_result_is_gone(
    rbuses: RedisBuses,
) -> None:
    bus = rbuses.new(block_ms=100)
    run = new_run()
    await bus.finish(run, [("__result__", b"{}")])
    with rbuses.client() as c:
        c.delete(bus.result_key(run))  # what its TTL does
    assert await asyncio.wait_for(bus.wait_result(run), 5) is None


async def test_stream_length_is_capped(rbuses: RedisBuses) -> None:
    bus = rbuses.new(max_events=100)
    run = new_run()
    ids = await publish_all(bus, run, 1000)
    with rbuses.client() as c:
        length = c.xlen(bus.events_key(run))
    assert 100 <= length < 400  # MAXLEN ~ trims whole radix-tree nodes
    got = await collect(bus.subscribe(run))
    assert [ev.id for ev in got[:-1]] == ids[len(ids) - len(got) + 1:]
    assert [ev.id for ev in await collect(bus.subscribe(run, last_event_id=ids[-2]))] == [ids[-1], got[-1].id]


async def test_an_unreadable_last_event_id_replays_from_the_start(rbuses: RedisBuses) -> None:
    bus = rbuses.new()
    run = new_run()
    await publish_all(bus, run, 3)
    assert len(await collect(bus.subscribe(run, last_event_id="not-an-id"))) == 4


async def test_cancelling_a_blocked_subscriber_is_prompt(rbuses: RedisBuses) -> None:
    bus = rbuses.new()
    task = asyncio.create_task(collect(bus.subscribe(new_run())))
    await asyncio.sleep(0.2)  # in XREAD BLOCK
    started = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.5


async def test_a_stream_that_vanishes_under_a_subscriber_ends_it(rbuses: RedisBuses) -> None:
    bus = rbuses.new(block_ms=100, missing_grace=0.3)
    run = new_run()
    await bus.publish(run, "metadata", b"{}")
    sub = bus.subscribe(run)
    assert (await anext(sub)).event == "metadata"
    with rbuses.client() as c:
        c.delete(bus.events_key(run))  # what the TTL does to a reader more than 10 min behind
    assert await collect(sub, timeout=5) == []


async def test_subscribers_and_control_survive_dropped_connections(rbuses: RedisBuses) -> None:
    worker, api = rbuses.new(), rbuses.new()
    run = new_run()
    received: list[str] = []
    worker.register_control(run, received.append)
    await worker.publish(run, "metadata", b"{}")
    sub = asyncio.create_task(collect(api.subscribe(run), timeout=20))
    await publish_all(worker, run, 10, close=False)
    await asyncio.sleep(0.1)
    assert rbuses.kill_connections(api) >= 1  # the subscriber's XREAD connection
    assert rbuses.kill_connections(worker) >= 1  # incl. the control pub/sub connection
    await publish_all(worker, run, 10)
    got = await sub
    assert [ev.event for ev in got] == ["metadata"] + ["custom"] * 20 + ["end"]
    assert len({ev.id for ev in got}) == len(got)
    await eventually(lambda: api.send_control(run, "interrupt"))  # resubscribed
    await eventually(lambda: _true(received == ["interrupt"]))


async def test_unreachable_redis_fails_after_the_retry_window(rbuses: RedisBuses) -> None:
    bus = rbuses.new(url=f"redis://127.0.0.1:{_free_port()}/0", retry_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(EventBusUnavailable) as exc:
        await bus.open()
    assert exc.value.code == "event_bus_unavailable" and "127.0.0.1" in exc.value.message
    with pytest.raises(EventBusUnavailable):
        await bus.publish(new_run(), "metadata", b"{}")
    assert time.monotonic() - started < 5


# ---- a real Redis restart (a private redis-server with an append-only file) ------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed: cannot restart a private Redis")
        self.binary = binary
        self.dir = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(self.url, socket_connect_timeout=0.2) as c:
                    c.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)  # a clean shutdown flushes the AOF
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None:
        server.proc.kill()
        server.proc.wait()


async def test_a_redis_restart_mid_run_loses_and_repeats_no_event(private_redis: PrivateRedis) -> None:
    buses = RedisBuses(private_redis.url)
    try:
        worker, api = buses.new(), buses.new()
        run = new_run()
        received: list[str] = []
        worker.register_control(run, received.append)
        await worker.publish(run, "metadata", b"{}")
        sub = asyncio.create_task(collect(api.subscribe(run), timeout=30))
        await publish_all(worker, run, 10, close=False)
        await asyncio.sleep(0.1)
        await asyncio.to_thread(private_redis.stop)
        # The run keeps publishing while Redis is down: publish retries until it is back.
        producer = asyncio.create_task(publish_all(worker, run, 10))
        await asyncio.sleep(0.5)
        assert not producer.done()
        await asyncio.to_thread(private_redis.start)
        await producer
        got = await sub
        assert [ev.data for ev in got[1:-1]] == [str(i).encode() for i in range(10)] * 2
        assert len({ev.id for ev in got}) == len(got) and got[-1].event == "end"
        await eventually(lambda: api.send_control(run, "interrupt"), timeout=10)
        await eventually(lambda: _true(received == ["interrupt"]))
    finally:
        await buses.aclose()
