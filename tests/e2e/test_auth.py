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


async def test_sdk_with_oidc_bearer_tokens_and_key_rotation(tmp_path: Path) -> None:
    """`DOCKYARD_AUTH=keys,oidc`: the official client sends a JWT from a real local JWKS;
    the identity provider rotates its key while the server runs."""
    from tests.oidc_support import IdentityProvider, oidc_env, serve_idp

    with serve_idp(IdentityProvider()) as idp:
        srv = make_server(tmp_path, DOCKYARD_AUTH="keys,oidc", **oidc_env(
            idp, DOCKYARD_OIDC_TENANT_CLAIM="org", DOCKYARD_OIDC_DEFAULT_ROLE="viewer"))
        _cli(srv, "tenants", "create", "acme")
        admin_key = _cli(srv, "keys", "create", "--tenant", "acme", "--role", "admin")
        srv.start()

        clients = []

        def client(token: str):  # type: ignore[no-untyped-def]
            clients.append(get_client(url=srv.url, api_key=None,
                                      headers={"Authorization": f"Bearer {token}"}))
            return clients[-1]

        dev = client(idp.token(org="acme", roles=["developer"]))
        admin = get_client(url=srv.url, api_key=admin_key)
        try:
            thread = await dev.threads.create(metadata={"by": "token"})
            result = await dev.runs.wait(thread["thread_id"], "three_steps",
                                         input={"steps": []})
            assert isinstance(result, dict)
            idp.rotate()  # new signing key; the old one leaves the JWKS
            rotated = client(idp.token(org="acme", roles=["developer"], sub="bob"))
            assert [t["thread_id"] for t in await rotated.threads.search()] == [
                thread["thread_id"]]
            viewer = client(idp.token(org="acme"))  # no role claim: the default role
            with pytest.raises(httpx.HTTPStatusError) as err:
                await viewer.threads.create()
            assert err.value.response.status_code == 403
            for bad in (idp.token(org="acme", ttl=-300), idp.token(org="acme", aud="x")):
                with pytest.raises(httpx.HTTPStatusError) as err:
                    await client(bad).threads.search()
                assert err.value.response.status_code == 401
                assert bad not in err.value.response.text
            runs = await admin.http.get("/admin/audit", params={"action": "run.create"})
            assert runs and runs[0]["actor"] == "oidc:alice"
        finally:
            for c in (*clients, admin):
                await c.aclose()
        srv.stop()
        assert idp.keys and not any(t in srv.logs() for t in ("eyJ",))


async def test_sdk_with_custom_auth_module(tmp_path: Path) -> None:
    """`auth.path` in langgraph.json: a reference-server Auth module, unchanged, behind
    `dockyard dev`, driven by the official client with bearer tokens."""
    from tests.custom_auth_support import write_project

    srv = make_server(tmp_path, project=write_project(tmp_path / "proj"))
    srv.start()

    def client(token: str | None):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return get_client(url=srv.url, api_key=None, headers=headers)

    alice, bob, eve, nobody = (client(t) for t in ("token-alice", "token-bob", "token-eve", None))
    try:
        a = await alice.threads.create(metadata={"topic": "a"})
        assert a["metadata"]["owner"] == "alice"
        b = await bob.threads.create()
        await alice.runs.wait(a["thread_id"], "g", input={})
        assert [t["thread_id"] for t in await alice.threads.search()] == [a["thread_id"]]
        assert [t["thread_id"] for t in await bob.threads.search()] == [b["thread_id"]]
        with pytest.raises(httpx.HTTPStatusError) as err:
            await bob.threads.get(a["thread_id"])
        assert err.value.response.status_code == 404
        with pytest.raises(httpx.HTTPStatusError) as err:
            await nobody.threads.search()
        assert err.value.response.status_code == 401
        with pytest.raises(httpx.HTTPStatusError) as err:
            await eve.threads.create()
        assert err.value.response.status_code == 403
        assert "threads:write" in err.value.response.text
    finally:
        for c in (alice, bob, eve, nobody):
            await c.aclose()
        srv.stop()
    assert "auth is off" not in srv.logs()
