"""dockyard/server.py: the HTTP protocol's transport joins the writes of one event-loop step."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from dockyard.server import _OneWritePerStep, http_protocol


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


async def test_writes_of_one_step_go_out_as_one() -> None:
    real = _Transport()
    t = _OneWritePerStep(real)  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    t.write(b"{}")
    assert real.writes == []  # not before the step ends
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    t.write(b"data: 1\n\n")  # a later part of a stream: its own write
    await asyncio.sleep(0)
    t.write(b"data: 2\n\n")
    t.close()  # what is held goes out before the socket closes
    assert real.writes[1:] == [b"data: 1\n\n", b"data: 2\n\n"] and real.closed
    assert t.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the socket's


async def test_the_server_answers_through_it(tmp_path: Any) -> None:
    """uvicorn with the protocol answers a JSON request and a streamed one in full."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/j")
    async def j() -> dict[str, int]:
        return {"a": 1}

    @app.get("/s")
    async def s() -> StreamingResponse:
        async def parts() -> Any:
            for i in range(3):
                yield f"{i}\n".encode()
                await asyncio.sleep(0.01)
        return StreamingResponse(parts())

    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http_protocol(),
                            log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            for _ in range(3):  # keep-alive: one connection, several responses
                assert (await c.get("/j")).json() == {"a": 1}
            assert (await c.get("/s")).text == "0\n1\n2\n"
    finally:
        server.should_exit = True
        await task
