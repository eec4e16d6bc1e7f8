"""Teams end to end: the official langgraph-sdk with `api_key=` against `dockyard dev` with
DOCKYARD_AUTH=keys (keys made by the CLI), and `dockyard serve --insecure`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client

from tests.e2e.conftest import (
    DOCKYARD,
    PROJECT,
    Server,
    free_port,
    http_ok,
    make_server,
    wait_until_up,
)


def _cli(server: Server, *args: str) -> str:
    out = subprocess.run(
        [str(DOCKYARD), *args, "--project", str(PROJECT), "--data-dir", str(server.data_dir)],
        env=server.env, check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[Server, str, str]]:
    srv = make_server(tmp_path, DOCKYARD_AUTH="keys")
    _cli(srv, "tenants", "create", "acme")
    acme = _cli(srv, "keys", "create", "--tenant", "acme", "--role", "developer")
    other = _cli(srv, "keys", "create", "--tenant", "default", "--role", "admin")
    srv.start()
    yield srv, acme, other
    srv.stop()


async def test_sdk_with_api_key_end_to_end(keyed: tuple[Server, str, str]) -> None:
    srv, acme_key, other_key = keyed
    acme = get_client(url=srv.url, api_key=acme_key)
    other = get_client(url=srv.url, api_key=other_key)
    anonymous = get_client(url=srv.url, api_key=None)
    try:
        thread = await acme.threads.create()
        # a new tenant gets its own default assistants: the graph id works as an assistant id
        result = await acme.runs.wait(thread["thread_id"], "three_steps", input={"steps": []})
        assert isinstance(result, dict)
        parts = [p async for p in acme.runs.stream(
            thread["thread_id"], "three_steps", input={"steps": []}, stream_mode="updates")]
        assert parts[0].event == "metadata" and any(p.event == "updates" for p in parts)
        assert [t["thread_id"] for t in await acme.threads.search()] == [thread["thread_id"]]
        # another tenant cannot see it
        assert await other.threads.search() == []
        with pytest.raises(httpx.HTTPStatusError) as err:
            await other.threads.get(thread["thread_id"])
        assert err.value.response.status_code == 404
        # no key: 401
        with pytest.raises(httpx.HTTPStatusError) as err:
            await anonymous.threads.create()
        assert err.value.response.status_code == 401
        assert "WWW-Authenticate" in err.value.response.headers
        assert http_ok(srv.url)  # liveness stays public
    finally:
        for c in (acme, other, anonymous):
            await c.aclose()
    assert "auth is off" not in srv.logs()


def test_serve_insecure_starts(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in srv.env.items() if k != "DOCKYARD_AUTH"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(DOCKYARD), "serve", str(PROJECT), "--port", str(port), "--insecure",
             "--data-dir", str(srv.data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(proc, log, 30, lambda: http_ok(url))
        assert httpx.post(f"{url}/threads", json={}).status_code == 200
        assert "auth is off" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
