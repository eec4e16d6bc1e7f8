"""Server-sent events: encoding, heartbeats on idle streams, cancel-on-disconnect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse

from dockyard.streams.base import Event


class EventStream(StreamingResponse):
    """What a streaming route answers: ``response_class=EventStream`` declares
    ``text/event-stream`` in the OpenAPI document (the route returns ``sse_response``)."""

    media_type = "text/event-stream"


_DISCONNECT_TASKS: set[asyncio.Future[None]] = set()


def encode(ev: Event) -> bytes:
    return b"event: " + ev.event.encode() + b"\ndata: " + ev.data + b"\nid: " + ev.id.encode() + b"\n\n"


async def _with_heartbeats(
    events: AsyncIterator[Event], heartbeat: float
) -> AsyncIterator[bytes]:
    it = aiter(events)
    nxt: asyncio.Task[Event] | None = None
    try:
        while True:
            if nxt is None:
                nxt = asyncio.ensure_future(anext(it))
            done, _ = await asyncio.wait({nxt}, timeout=heartbeat)
            if not done:
                yield b": heartbeat\n\n"
                continue
            try:
                ev = nxt.result()
            except StopAsyncIteration:
                return
            nxt = None
            yield encode(ev)
    finally:
        if nxt is not None and not nxt.done():
            nxt.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await nxt
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def sse_response(
    events: AsyncIterator[Event],
    *,
    heartbeat: float,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        finished = False
        try:
            async for chunk in _with_heartbeats(events, heartbeat):
                yield chunk
            finished = True
        finally:
            if not finished and on_disconnect is not None:
                # The client went away mid-stream (on_disconnect=cancel). This task is being
                # cancelled, so the cancel runs as a task of its own; the loop keeps only weak
                # references to tasks, so hold a strong one until it is done.
                task = asyncio.ensure_future(on_disconnect())
                _DISCONNECT_TASKS.add(task)
                task.add_done_callback(_DISCONNECT_TASKS.discard)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})},
    )
