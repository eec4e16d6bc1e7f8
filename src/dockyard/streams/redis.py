"""Redis event bus for the production topology: API replicas and workers in separate processes.

Events: one Redis Stream per run, ``{prefix}:run:{run_id}:events``. Event ids are the stream
ids, so ``Last-Event-ID`` resumption works from any API process: a subscriber XREADs after the
id it was given (from ``0-0`` when none). ``close()`` appends a terminal marker entry, sets a
small ``…:closed`` key (what ``is_closed`` reads) and a TTL on both, so finished runs' buffers
expire; ``finish()`` appends a run's last events and closes it in the same round trip.

Streams are also capped (``MAXLEN ~``) and carry an idle TTL, so a run abandoned by a dead
worker does not keep its buffer forever. The TTL is not refreshed on every publish (an EXPIRE
per event): a process sets ``idle_ttl + ttl_refresh`` at its first publish to a stream and
again at its first publish once ``ttl_refresh`` seconds have passed. A stream thus lives at
least ``idle_ttl`` after its last event and at most ``ttl_refresh`` longer, and a 3-node run
costs one EXPIRE instead of one per event. After a connection failure (Redis may have
restarted and lost the keys, which the next XADD recreates without a TTL) every stream's TTL
is set again at its next publish.

Control: one pub/sub channel per run, ``{prefix}:control:{run_id}``, subscribed only by the
process executing the run, so the receiver count PUBLISH returns tells ``send_control``
whether an executor got the message. Each process keeps one pub/sub connection, rebuilt after
a connection loss, and one reader task that calls the handlers.

Resilience: a command failing on the connection (Redis restarting) is retried with backoff for
``retry_seconds``, then raises :class:`~dockyard.errors.EventBusUnavailable`. Subscribers
reconnect and resume after the last id they yielded, so they lose and repeat nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dockyard.errors import EventBusUnavailable
from dockyard.streams.base import RESULT_EVENT, ControlHandler, Event, EventBus

log = logging.getLogger("dockyard.streams")

T = TypeVar("T")

DEFAULT_PREFIX = "dockyard"
CLOSED_TTL_SECONDS = 600  # a finished run's events stay joinable this long
IDLE_TTL_SECONDS = 24 * 3600  # a stream nobody publishes to (its worker died) expires
TTL_REFRESH_SECONDS = 60  # a process re-sets a stream's idle TTL at most this often
TTL_TRACKED = 4096  # streams whose TTL refresh is tracked before the past ones are forgotten
MAX_EVENTS = 20_000  # MAXLEN ~ per run, like the in-process buffer
BLOCK_MS = 1_000  # XREAD BLOCK: bounded, so a subscriber's connection is never held for long
READ_COUNT = 500
RETRY_SECONDS = 30.0  # covers a Redis restart; longer outages surface as EventBusUnavailable
MISSING_GRACE_SECONDS = 60.0  # a stream that vanished under a subscriber (expired) ends it
CONTROL_READY_SECONDS = 2.0  # how long a run's first publish waits for its control channel
OUTBOX_LIMIT = 10_000  # queued sends beyond this wait for their own write (backpressure)
OUTBOX_BATCH = 1_000  # commands' producers per pipeline
# How long a send may wait in the outbox for others to share its round trip. Nothing waits for a
# send; a publish or a finish, which are awaited, write the outbox at once (sends ahead of them
# first). A step of a fast graph takes about as long, so its events rarely travel alone, and the
# write is seldom on the run's own path between two steps.
OUTBOX_LINGER_SECONDS = 0.002
RETRY_FIRST_DELAY = 0.05
RETRY_MAX_DELAY = 2.0

# Failures worth retrying: the connection, not the command.
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# Field names of a stream entry: the event name and its data; the terminal marker has only
# CLOSED_FIELD, so it can never be taken for an event.
_EVENT_FIELD, _DATA_FIELD, _CLOSED_FIELD = b"e", b"d", b"closed"
_STREAM_ID = re.compile(r"\d+(-\d+)?")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(reply: Any) -> list[tuple[Any, dict[bytes, bytes]]]:
    """The entries of an XREAD reply for one stream (RESP2: a list, RESP3: a dict)."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (item[1] for item in reply)
    out: list[tuple[Any, dict[bytes, bytes]]] = []
    for entries in streams:
        # RESP3 nests the entries of a stream one level deeper.
        if entries and isinstance(entries[0], list) and entries[0] and isinstance(entries[0][0], list):
            entries = entries[0]
        out.extend((entry[0], entry[1]) for entry in entries)
    return out


class _Reconnect:
    """The backoff of a blocking reader (``subscribe``, ``wait_result``) while Redis is
    unreachable: ``failed`` sleeps before the next try, or raises once the failures have
    lasted ``retry_seconds``; ``ok`` after a read that worked."""

    def __init__(self, bus: RedisBus, op: str, run_id: str) -> None:
        self.bus, self.op, self.run_id = bus, op, run_id
        self.failing_since: float | None = None
        self.delay = RETRY_FIRST_DELAY

    async def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > self.bus.retry_seconds:
            raise EventBusUnavailable(
                f"Redis at {self.bus.where} unreachable for {self.bus.retry_seconds:g}s "
                f"({self.op}): {exc}", op=self.op,
            ) from exc
        log.warning("event_bus_retry op=%s run_id=%s delay=%.2f error=%s",
                    self.op, self.run_id, self.delay, exc)
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, RETRY_MAX_DELAY)

    def ok(self) -> None:
        self.failing_since, self.delay = None, RETRY_FIRST_DELAY


def _raise_if_cancelling() -> None:
    """Raise the cancellation a library call swallowed (redis-py can, inside get_message and
    (un)subscribe), so a loop does not go on as if nothing had been asked of it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass(slots=True)
class _Outgoing:
    """Commands waiting in the outbox: ``add`` puts them on a pipeline (again on a retry);
    ``done`` gets the first reply (an event's id), None for ``send``."""

    run_id: str
    op: str
    add: Callable[[Any], None]
    done: asyncio.Future[Any] | None


class RedisBus(EventBus):
    """The ``EventBus`` over Redis Streams (events) and pub/sub (control messages)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        closed_ttl: int = CLOSED_TTL_SECONDS,
        idle_ttl: int = IDLE_TTL_SECONDS,
        ttl_refresh: int = TTL_REFRESH_SECONDS,
        max_events: int = MAX_EVENTS,
        block_ms: int = BLOCK_MS,
        retry_seconds: float = RETRY_SECONDS,
        missing_grace: float = MISSING_GRACE_SECONDS,
    ) -> None:
        self._client = client
        self.prefix = prefix
        self.closed_ttl = closed_ttl
        self.idle_ttl = idle_ttl
        self.ttl_refresh = ttl_refresh
        # Stream key -> monotonic time at which this process next sets its idle TTL.
        self._ttl_due: dict[str, float] = {}
        self.max_events = max_events
        self.block_ms = block_ms
        self.retry_seconds = retry_seconds
        self.missing_grace = missing_grace
        self._control_prefix = f"{prefix}:control:"
        # Control: handlers of the runs executing in this process, the runs whose channel is
        # subscribed on the current pub/sub connection, and those Redis has confirmed.
        self._controls: dict[str, ControlHandler] = {}
        self._subscribed: set[str] = set()
        self._confirmed: set[str] = set()
        self._ready: dict[str, asyncio.Future[None]] = {}
        self._dirty = asyncio.Event()
        self._control_task: asyncio.Task[None] | None = None
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        # Events and finishes waiting for the next pipeline, the task writing them, and what
        # failed a ``send`` (raised by the run's next call).
        self._outbox: list[_Outgoing] = []
        self._held: dict[str, list[_Outgoing]] = {}  # sends waiting for their control channel
        self._flusher: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None  # a write of lingering sends, to come
        self._failed: dict[str, BaseException] = {}

    @classmethod
    def from_url(cls, url: str, *, client_name: str = "dockyard", **options: Any) -> RedisBus:
        """A bus on ``redis://…`` / ``rediss://…``; ``options`` go to the constructor.

        ``client_name`` names the connections in ``CLIENT LIST``.
        """
        client = Redis.from_url(
            url,
            client_name=client_name,
            socket_connect_timeout=5,
            # Above BLOCK_MS, so a blocked XREAD is not mistaken for a dead connection.
            socket_timeout=10,
            # Idle connections (the pub/sub one above all) are pinged, so a silently dropped
            # connection is noticed and rebuilt.
            health_check_interval=30,
            # No retries inside redis-py: this class retries, with its own bounded window.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, **options)

    @property
    def where(self) -> str:
        """host:port/db of the server, for messages (never the password)."""
        kw = self._client.connection_pool.connection_kwargs
        return f"{kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}/{kw.get('db', 0)}"

    def events_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:events"

    def closed_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:closed"

    def result_key(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}:result"

    def control_channel(self, run_id: str) -> str:
        return self._control_prefix + run_id

    # ---- connection lifecycle -----------------------------------------------------------
    async def open(self) -> None:
        await self._retrying("ping", "-", self._client.ping)

    async def ping(self) -> bool:
        """Health check (``/ok?check_db=1``): one PING, no retries; raises when Redis is down."""
        return bool(await self._client.ping())

    async def aclose(self) -> None:
        if self._linger is not None and self._outbox:
            self._kick()  # lingering sends are written now
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flusher), self.retry_seconds)
        tasks = [t for t in (self._control_task, *self._handler_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task whose library call swallowed the cancellation is not waited on.
            await asyncio.wait(tasks, timeout=2.0)
        self._control_task = None
        self._handler_tasks.clear()
        await self._client.aclose()

    async def _retrying(self, op: str, run_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried with backoff while the connection fails, for ``retry_seconds``.

        A retried write whose first attempt reached Redis before the connection broke may be
        applied twice; within a run's stream that shows as a repeated event, which is the
        price of not losing one.
        """
        deadline = time.monotonic() + self.retry_seconds
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                return await call()
            except _CONNECTION_ERRORS as exc:
                self._ttl_due.clear()  # Redis may have restarted empty: set TTLs again
                if time.monotonic() + delay > deadline:
                    log.error("event_bus_unavailable op=%s run_id=%s redis=%s error=%s",
                              op, run_id, self.where, exc)
                    raise EventBusUnavailable(
                        f"Redis at {self.where} unreachable for {self.retry_seconds:g}s ({op}): {exc}",
                        op=op,
                    ) from exc
                log.warning("event_bus_retry op=%s run_id=%s delay=%.2f error=%s", op, run_id, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)

    # ---- events -------------------------------------------------------------------------
    async def publish(self, run_id: str, event: str, data: bytes) -> str:
        done = asyncio.get_running_loop().create_future()
        await self._queue(run_id, "publish", self._event_adder(run_id, event, data), done)
        return _text(await done)

    async def send(self, run_id: str, event: str, data: bytes) -> None:
        """Queue the event for the outbox's next pipeline and return without its id (see
        ``EventBus.send``); a failure to write it is raised by the run's next call."""
        await self._queue(run_id, "publish", self._event_adder(run_id, event, data), None)

    def _event_adder(self, run_id: str, event: str, data: bytes) -> Callable[[Any], None]:
        key = self.events_key(run_id)

        def add(pipe: Any) -> None:
            pipe.xadd(key, {_EVENT_FIELD: event, _DATA_FIELD: data}, maxlen=self.max_events,
                      approximate=True)
            now = time.monotonic()
            if now >= self._ttl_due.get(key, 0.0):
                pipe.expire(key, self.idle_ttl + self.ttl_refresh)
                self._ttl_set(key, now)

        return add

    async def _queue(
        self, run_id: str, op: str, add: Callable[[Any], None],
        done: asyncio.Future[Any] | None,
    ) -> None:
        """Put commands in the outbox once the run's control channel is live, and raise what
        failed an earlier ``send`` of the run.

        A run's events become visible only after its control channel is subscribed, so a
        client that sees them can cancel the run at once. ``send`` does not wait for that:
        its events are held back until the channel is live (at most CONTROL_READY_SECONDS),
        then queued ahead of anything the run queues later.
        """
        failed = self._failed.pop(run_id, None)
        if failed is not None:
            if op != "close":
                raise failed
            # The run's end is still worth writing: its subscribers stop rather than wait.
            log.warning("event_lost run_id=%s error=%s", run_id, failed)
        item = _Outgoing(run_id, op, add, done)
        ready = self._ready.get(run_id)
        if ready is not None and not ready.done():
            if done is None:
                held = self._held.get(run_id)
                if held is None:
                    self._held[run_id] = [item]
                    ready.add_done_callback(lambda _: self._release(run_id))
                    asyncio.get_running_loop().call_later(
                        CONTROL_READY_SECONDS, self._control_late, run_id, ready)
                else:
                    held.append(item)
                return
            await self._await_control_ready(run_id, ready)
        self._release(run_id)  # what the run held back goes first
        if done is None and len(self._outbox) >= OUTBOX_LIMIT:
            # Redis is slower than the runs: the sender waits for its event, as publish does.
            done = item.done = asyncio.get_running_loop().create_future()
        self._outbox.append(item)
        self._kick(linger=done is None)
        if done is not None:
            await done

    def _release(self, run_id: str) -> None:
        held = self._held.pop(run_id, None)
        if held:
            self._outbox.extend(held)
            self._kick()

    def _control_late(self, run_id: str, ready: asyncio.Future[None]) -> None:
        if not ready.done():
            log.warning("event_bus_control_not_ready run_id=%s", run_id)
            ready.set_result(None)  # its callback releases the held events

    def _kick(self, *, linger: bool = False) -> None:
        """Start writing the outbox; ``linger``: after ``OUTBOX_LINGER_SECONDS``, unless a write
        is under way or comes sooner."""
        if self._flusher is not None and not self._flusher.done():
            return
        if linger:
            if self._linger is None:
                self._linger = asyncio.get_running_loop().call_later(
                    OUTBOX_LINGER_SECONDS, self._kick)
            return
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush(), name="dockyard-bus-outbox")

    async def _flush(self) -> None:
        """Write the outbox in pipelines, in order, until it is empty.

        Every event and ``finish`` of this process goes through it, so a run's commands reach
        Redis in the order they were queued, and the events of runs executing side by side
        share round trips. A connection failure retries the whole pipeline (``_retrying``).
        """
        while self._outbox:
            batch, self._outbox = self._outbox[:OUTBOX_BATCH], self._outbox[OUTBOX_BATCH:]

            async def write(batch: list[_Outgoing] = batch) -> tuple[list[int], list[Any]]:
                async with self._client.pipeline(transaction=False) as pipe:
                    starts = []
                    for item in batch:
                        starts.append(len(pipe.command_stack))
                        item.add(pipe)
                    return starts, await pipe.execute()

            try:
                starts, replies = await self._retrying(batch[0].op, batch[0].run_id, write)
            except Exception as exc:
                for item in batch:
                    if item.done is None:
                        if len(self._failed) >= TTL_TRACKED:
                            self._failed.clear()
                        self._failed[item.run_id] = exc
                    elif not item.done.done():
                        item.done.set_exception(exc)
                continue
            for item, start in zip(batch, starts, strict=True):
                if item.done is not None and not item.done.done():
                    item.done.set_result(replies[start])

    def _ttl_set(self, key: str, now: float) -> None:
        """Remember that ``key``'s idle TTL was set at ``now`` (bounded: streams whose refresh
        is due anyway are forgotten first)."""
        if len(self._ttl_due) >= TTL_TRACKED and key not in self._ttl_due:
            self._ttl_due = {k: due for k, due in self._ttl_due.items() if due > now}
            if len(self._ttl_due) >= TTL_TRACKED:
                self._ttl_due.clear()  # costs each stream one more EXPIRE, nothing else
        self._ttl_due[key] = now + self.ttl_refresh

    async def last_id(self, run_id: str) -> str | None:
        reply = await self._retrying(
            "last_id", run_id, lambda: self._client.xrevrange(self.events_key(run_id), count=1)
        )
        return _text(reply[0][0]) if reply and reply[0][0] is not None else None

    def seq(self, event_id: str) -> int:
        # Stream ids are <ms>-<n>: ms * 1000 + n keeps their order (a channel gets far fewer
        # than 1,000 events in one millisecond) and stays below 2**53 for JavaScript clients.
        ms, _, n = event_id.partition("-")
        return int(ms) * 1000 + min(int(n or 0), 999)

    def event_id_at(self, seq: int) -> str:
        return f"{seq // 1000}-{seq % 1000}"

    async def close(self, run_id: str) -> None:
        await self.finish(run_id)

    async def finish(self, run_id: str, events: Sequence[tuple[str, bytes]] = ()) -> None:
        """The last events, the terminal marker, the closed TTL and the ``…:closed`` key, in
        one round trip.

        A pipeline, not a MULTI: Redis runs its commands in order, and a retry after a write
        that broke half-way can only repeat entries that precede the first marker, where
        subscribers stop, or repeat one of the last events, as a retried publish can.
        """
        key = self.events_key(run_id)

        def add(pipe: Any) -> None:
            for event, data in events:
                pipe.xadd(key, {_EVENT_FIELD: event, _DATA_FIELD: data},
                          maxlen=self.max_events, approximate=True)
            pipe.xadd(key, {_CLOSED_FIELD: b"1"}, maxlen=self.max_events, approximate=True)
            pipe.expire(key, self.closed_ttl)
            # What wait_result reads: the result, if the run has one, else the marker; before
            # the closed key, so a run seen closed has it.
            results = [data for event, data in events if event == RESULT_EVENT]
            result_key = self.result_key(run_id)
            pipe.xadd(result_key, {_DATA_FIELD: results[-1]} if results else {_CLOSED_FIELD: b"1"},
                      maxlen=1, approximate=False)
            pipe.expire(result_key, self.closed_ttl)
            pipe.set(self.closed_key(run_id), b"1", ex=self.closed_ttl)
            self._ttl_due.pop(key, None)

        await self._queue(run_id, "close", add, asyncio.get_running_loop().create_future())

    async def wait_result(self, run_id: str) -> bytes | None:
        """The run's result from its result key, written by ``finish`` with the end of the
        stream: one blocking read that wakes once, however many events the run has."""
        key = self.result_key(run_id)
        reconnect = _Reconnect(self, "wait_result", run_id)
        while True:
            try:
                reply = await self._client.xread({key: "0-0"}, count=1, block=self.block_ms)
                entries = _entries(reply)
                if not entries and await self._client.exists(self.closed_key(run_id)):
                    # Closed: its entry was written before the closed key, unless it expired
                    # just now (or an older process closed the run without one).
                    entries = _entries(await self._client.xread({key: "0-0"}, count=1))
                    if not entries:
                        return None
            except _CONNECTION_ERRORS as exc:
                await reconnect.failed(exc)
                continue
            reconnect.ok()
            for _, fields in entries:
                return fields.get(_DATA_FIELD)

    async def is_closed(self, run_id: str) -> bool:
        return bool(await self._retrying("is_closed", run_id,
                                         lambda: self._client.exists(self.closed_key(run_id))))

    async def subscribe(
        self, run_id: str, *, last_event_id: str | None = None
    ) -> AsyncIterator[Event]:
        key = self.events_key(run_id)
        # Anything that is not a stream id (e.g. an in-process id from before a migration) means
        # "from the start", as the in-process bus does with ids it cannot read.
        after = last_event_id if last_event_id and _STREAM_ID.fullmatch(last_event_id) else "0-0"
        seen = False  # read an entry here: a stream that then disappears has expired
        missing_since: float | None = None
        reconnect = _Reconnect(self, "subscribe", run_id)
        while True:
            try:
                reply = await self._client.xread({key: after}, count=READ_COUNT, block=self.block_ms)
                if not reply and seen:
                    if await self._client.exists(key):
                        missing_since = None
                    elif missing_since is None:
                        missing_since = time.monotonic()
                    elif time.monotonic() - missing_since > self.missing_grace:
                        log.warning("event_stream_vanished run_id=%s after=%s", run_id, after)
                        return
            except _CONNECTION_ERRORS as exc:
                # Redis restarting: reconnect and resume after the last id yielded.
                await reconnect.failed(exc)
                continue
            reconnect.ok()
            for entry_id, fields in _entries(reply):
                if _CLOSED_FIELD in fields:
                    return
                after = _text(entry_id)
                seen = True
                yield Event(after, _text(fields[_EVENT_FIELD]), fields[_DATA_FIELD])

    # ---- control ------------------------------------------------------------------------
    async def send_control(self, run_id: str, action: str) -> bool:
        channel = self.control_channel(run_id)
        receivers = await self._retrying("send_control", run_id,
                                         lambda: self._client.publish(channel, action))
        return int(receivers) > 0

    def register_control(self, run_id: str, handler: ControlHandler) -> None:
        loop = asyncio.get_running_loop()
        self._controls[run_id] = handler
        ready = loop.create_future()
        if run_id in self._confirmed:
            ready.set_result(None)
        self._ready[run_id] = ready
        self._controls_changed(loop)

    def unregister_control(self, run_id: str) -> None:
        self._controls.pop(run_id, None)
        ready = self._ready.pop(run_id, None)
        if ready is not None and not ready.done():
            ready.set_result(None)  # a publish waiting on it goes ahead
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to unsubscribe from
            self._controls_changed(asyncio.get_running_loop())

    def _controls_changed(self, loop: asyncio.AbstractEventLoop) -> None:
        self._dirty.set()
        if self._control_task is None or self._control_task.done():
            self._control_task = loop.create_task(self._control_loop(), name="dockyard-bus-control")

    async def _await_control_ready(self, run_id: str, ready: asyncio.Future[None]) -> None:
        """Let a run's control channel be live before its first event is visible.

        A client that sees the run's events can then cancel it at once. Bounded: a slow or
        absent Redis delays the run at most CONTROL_READY_SECONDS here.
        """
        try:
            await asyncio.wait_for(asyncio.shield(ready), CONTROL_READY_SECONDS)
        except TimeoutError:
            log.warning("event_bus_control_not_ready run_id=%s", run_id)
            if not ready.done():
                ready.set_result(None)  # don't wait again on every publish

    async def _control_loop(self) -> None:
        """Keep the pub/sub connection subscribed to the channels of ``_controls``."""
        delay = RETRY_FIRST_DELAY
        while True:
            _raise_if_cancelling()
            pubsub = self._client.pubsub()
            self._subscribed, self._confirmed = set(), set()
            reader: asyncio.Task[None] | None = None
            try:
                while True:
                    self._dirty.clear()
                    await self._reconcile(pubsub)
                    _raise_if_cancelling()
                    if reader is None and pubsub.connection is not None:
                        reader = asyncio.create_task(self._read_controls(pubsub),
                                                     name="dockyard-bus-control-reader")
                    delay = RETRY_FIRST_DELAY
                    changed = asyncio.create_task(self._dirty.wait())
                    try:
                        await asyncio.wait([t for t in (changed, reader) if t is not None],
                                           return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        changed.cancel()
                    if reader is not None and reader.done():
                        reader.result()  # re-raise what ended it
                        raise RedisConnectionError("control reader stopped")
            except _CONNECTION_ERRORS as exc:
                log.warning("event_bus_control_reconnect delay=%.2f error=%s", delay, exc)
            except Exception:
                log.exception("event_bus_control_failed delay=%.2f", delay)
            finally:
                if reader is not None:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)

    async def _reconcile(self, pubsub: PubSub) -> None:
        wanted = set(self._controls)
        add, drop = wanted - self._subscribed, self._subscribed - wanted
        if add:
            await pubsub.subscribe(*(self.control_channel(r) for r in add))
            self._subscribed |= add
        if drop:
            await pubsub.unsubscribe(*(self.control_channel(r) for r in drop))
            self._subscribed -= drop

    async def _read_controls(self, pubsub: PubSub) -> None:
        while True:
            _raise_if_cancelling()
            msg = await pubsub.get_message(timeout=1.0)
            if msg is None:
                continue
            kind, channel = msg["type"], _text(msg["channel"])
            if not channel.startswith(self._control_prefix):
                continue
            run_id = channel[len(self._control_prefix):]
            if kind == "subscribe":
                self._confirmed.add(run_id)
                ready = self._ready.get(run_id)
                if ready is not None and not ready.done():
                    ready.set_result(None)
            elif kind == "unsubscribe":
                self._confirmed.discard(run_id)
            elif kind == "message":
                self._dispatch(run_id, _text(msg["data"]))

    def _dispatch(self, run_id: str, action: str) -> None:
        handler = self._controls.get(run_id)
        if handler is None:
            return  # the run ended here just now
        try:
            result = handler(action)
        except Exception:
            log.exception("control_handler_failed run_id=%s action=%s", run_id, action)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        self._handler_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("control_handler_failed error=%s", task.exception())
