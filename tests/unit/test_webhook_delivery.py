"""Outgoing webhooks end to end in one process: signed with HMAC-SHA256 (checked by a real local
receiver with the published recipe), retried on 5xx/429/network errors with backoff, failed at
once on other 4xx, persisted (a delivery cut short by a crash is retried), claimed safely by
several processes, refused at run creation by the URL policy, and visible in the delivery log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from dockyard.services.ids import new_id
from dockyard.storage import create_storage
from dockyard.storage.webhooks import WebhookDeliveries
from dockyard.webhooks import ATTEMPT_HEADER, ID_HEADER, InvalidSignature, sign, verify_signature
from tests.conftest import NewDatabase
from tests.webhook_support import receiver, until, write_project

SECRET = "global-secret-value"

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(tmp_path: Path, new_database: NewDatabase) -> Iterator[MakeClient]:
    """A running app (API + workers + delivery loop) on a fresh database of the selected
    dialect; settings default to a local receiver being reachable (private, http)."""
    clients: list[TestClient] = []

    def make(*, dev: bool = False, project: dict[str, Any] | None = None,
             **settings: Any) -> TestClient:
        root = tmp_path / f"p{len(clients)}"
        root.mkdir()
        write_project(root, **(project or {}))
        values = {"database_url": new_database(), "data_dir": str(root / "data"),
                  "webhook_secret": SECRET, "allow_private_webhooks": True,
                  "webhook_require_https": False, "webhook_backoff_seconds": 0.01,
                  "webhook_backoff_max_seconds": 0.05, **settings}
        app = create_app(load_project(root), Settings.from_env(values, environ={}), dev=dev)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _run(client: TestClient, webhook: str, **body: Any) -> dict[str, Any]:
    resp = client.post("/runs", json={"assistant_id": "echo", "input": {"n": 1},
                                      "webhook": webhook, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _settled(client: TestClient, run_id: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        rows = client.get(f"/runs/{run_id}/webhooks").json()
        return rows[0] if rows and rows[0]["status"] != "pending" else None

    return until(check, f"the webhook of run {run_id} to settle")  # type: ignore[no-any-return]


def test_delivery_is_signed_and_verifiable(make_client: MakeClient) -> None:
    client = make_client()
    with receiver(secret=SECRET) as rec:
        run = _run(client, rec.url)
        delivery = _settled(client, run["run_id"])
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 200
    assert delivery["delivered_at"] and delivery["next_attempt_at"] is None
    (req,) = rec.requests
    assert req["signature"] == "valid"
    assert req["headers"][ID_HEADER.lower()] == delivery["delivery_id"]
    assert req["headers"][ATTEMPT_HEADER.lower()] == "1"
    assert b'"status":"success"' in req["body"] and b'"got":{"n":1}' in req["body"]
    # Tampering with the body, or the wrong secret, fails the recipe.
    header = req["headers"]["dockyard-signature"]
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature(SECRET, req["body"] + b" ", header)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_signature("other", req["body"], header)


def test_server_error_then_success_is_retried(make_client: MakeClient) -> None:
    client = make_client()
    with receiver([500, 503], secret=SECRET) as rec:
        run = _run(client, rec.url)
        delivery = _settled(client, run["run_id"])
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200 and delivery["last_error"] is None
    assert [r["answered"] for r in rec.requests] == [500, 503, 200]
    # One delivery: the same id and body every time, a fresh valid signature on each attempt.
    assert len({r["headers"]["dockyard-webhook-id"] for r in rec.requests}) == 1
    assert len({r["body"] for r in rec.requests}) == 1
    assert [r["headers"]["dockyard-webhook-attempt"] for r in rec.requests] == ["1", "2", "3"]
    assert all(r["signature"] == "valid" for r in rec.requests)


def test_rate_limited_is_retried(make_client: MakeClient) -> None:
    client = make_client()
    with receiver([429], secret=SECRET) as rec:
        delivery = _settled(client, _run(client, rec.url)["run_id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 2


@pytest.mark.parametrize("status", [400, 404, 410, 302])
def test_other_client_errors_are_not_retried(make_client: MakeClient, status: int) -> None:
    client = make_client()
    with receiver([status, 200], secret=SECRET) as rec:
        delivery = _settled(client, _run(client, rec.url)["run_id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == status
    assert delivery["last_error"].startswith(f"HTTP {status}")
    assert len(rec.requests) == 1


def test_network_errors_are_retried_up_to_max_attempts(make_client: MakeClient) -> None:
    client = make_client(webhook_max_attempts=3)
    with receiver() as rec:
        dead = rec.url  # the port is closed once the receiver stops
    delivery = _settled(client, _run(client, dead)["run_id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] is None
    assert "ConnectError" in delivery["last_error"]


def test_per_assistant_secret_and_unsigned(make_client: MakeClient,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECHO_HOOK_SECRET_T1", "echo-only-secret")
    client = make_client(project={"dockyard": {"webhook_secrets": {"echo": "ECHO_HOOK_SECRET_T1"}}})
    with receiver(secret="echo-only-secret") as rec:
        _settled(client, _run(client, rec.url)["run_id"])
    assert rec.requests[0]["signature"] == "valid"
    # No secret at all: delivered unsigned.
    bare = make_client(webhook_secret=None)
    with receiver() as rec:
        _settled(bare, _run(bare, rec.url)["run_id"])
    assert "dockyard-signature" not in rec.requests[0]["headers"]


def test_secrets_are_never_logged_or_returned(make_client: MakeClient,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client()
    with receiver([500], secret=SECRET) as rec:
        url = rec.url.replace("http://", "http://user:pa55word@")
        run = _run(client, url)
        delivery = _settled(client, run["run_id"])
    assert delivery["url"] == rec.url.replace("http://", "http://user:***@")
    assert all(r["headers"]["authorization"].startswith("Basic ") for r in rec.requests)
    listing = client.get("/webhooks/deliveries").text
    assert SECRET not in listing and "pa55word" not in listing
    assert SECRET not in caplog.text and "pa55word" not in caplog.text
    assert SECRET not in client.get("/info").text
    assert SECRET not in repr(client.app.state.dockyard.settings)  # type: ignore[attr-defined]


def test_delivery_log_api(make_client: MakeClient) -> None:
    client = make_client(webhook_max_attempts=1)
    with receiver([500], secret=SECRET) as rec:
        failed = _run(client, rec.url)
        _settled(client, failed["run_id"])
        ok = _run(client, rec.url)
        _settled(client, ok["run_id"])
    rows = client.get("/webhooks/deliveries").json()
    assert [r["run_id"] for r in rows] == [ok["run_id"], failed["run_id"]]  # newest first
    only_failed = client.get("/webhooks/deliveries", params={"status": "failed"}).json()
    assert [(r["run_id"], r["attempts"], r["last_status_code"]) for r in only_failed] == [
        (failed["run_id"], 1, 500)]
    by_run = client.get("/webhooks/deliveries", params={"run_id": ok["run_id"]}).json()
    assert [r["status"] for r in by_run] == ["succeeded"]
    assert set(by_run[0]) == {
        "delivery_id", "run_id", "thread_id", "assistant_id", "url", "status", "attempts",
        "max_attempts", "last_status_code", "last_error", "next_attempt_at", "created_at",
        "updated_at", "delivered_at"}
    assert client.get(f"/runs/{new_id()}/webhooks").json() == []
    bad = client.get("/webhooks/deliveries", params={"status": "lost"})
    assert bad.status_code == 422 and "status must be one of" in bad.json()["detail"]
    assert client.get("/runs/not-a-uuid/webhooks").status_code == 422


# ---- URL policy -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "settings", "reason"),
    [
        ("http://hooks.example.com/x", {}, "DOCKYARD_WEBHOOK_REQUIRE_HTTPS"),
        ("https://127.0.0.1/x", {}, "DOCKYARD_ALLOW_PRIVATE_WEBHOOKS"),
        ("https://localhost/x", {}, "non-public address"),
        ("https://10.0.0.8/x", {}, "non-public address"),
        ("https://elsewhere.example.org/x", {"webhook_allowed_domains": "example.com"},
         "DOCKYARD_WEBHOOK_ALLOWED_DOMAINS"),
        ("ftp://example.com/x", {}, "absolute http(s) URL"),
    ],
)
def test_production_url_policy_refuses_at_run_creation(
    make_client: MakeClient, url: str, settings: dict[str, Any], reason: str
) -> None:
    client = make_client(allow_private_webhooks=False, webhook_require_https=True, **settings)
    resp = client.post("/runs", json={"assistant_id": "echo", "input": {}, "webhook": url})
    assert resp.status_code == 422
    assert resp.json()["code"] in ("webhook_forbidden", "invalid_webhook")
    assert reason in resp.json()["detail"]
    assert client.get("/webhooks/deliveries").json() == []


def test_dev_allows_http_and_loopback(make_client: MakeClient) -> None:
    client = make_client(dev=True, allow_private_webhooks=False, webhook_require_https=True)
    with receiver(secret=SECRET) as rec:
        delivery = _settled(client, _run(client, rec.url)["run_id"])
    assert delivery["status"] == "succeeded"


def test_policy_is_checked_again_at_delivery(make_client: MakeClient) -> None:
    """A delivery whose target became forbidden (here: the operator's policy changed) fails
    without being sent."""
    client = make_client(allow_private_webhooks=False, webhook_require_https=True)
    app = client.app.state.dockyard  # type: ignore[attr-defined]
    row = {"run_id": new_id(), "thread_id": None, "assistant_id": None, "graph_id": "echo"}
    client.portal.call(app.webhook_log.deliveries.insert, "default", new_id(), row,  # type: ignore[union-attr]
                       "http://127.0.0.1:9/x", b"{}", 3)
    app.webhooks.notify()
    (delivery,) = until(lambda: [r for r in client.get("/webhooks/deliveries").json()
                                 if r["status"] != "pending"], "the delivery to fail")
    assert delivery["status"] == "failed" and "https" in delivery["last_error"]


# ---- persistence and claims -----------------------------------------------------------------
def test_delivery_cut_short_by_a_crash_is_retried(make_client: MakeClient) -> None:
    """A row claimed by a process that died (attempt 1 counted, lease expired) is delivered by
    the next process; one whose attempts are used up fails naming the reason."""
    client = make_client(webhook_max_attempts=2)
    app = client.app.state.dockyard  # type: ignore[attr-defined]
    with receiver(secret=SECRET) as rec:
        ids = [new_id(), new_id()]
        for delivery_id, attempts in zip(ids, (1, 2), strict=True):
            row = {"run_id": new_id(), "thread_id": None, "assistant_id": None, "graph_id": "echo"}
            client.portal.call(app.webhook_log.deliveries.insert, "default", delivery_id,  # type: ignore[union-attr]
                               row, rec.url, b'{"forged":true}', 2)
            client.portal.call(app.storage.execute,  # type: ignore[union-attr]
                               "UPDATE webhook_deliveries SET attempts = ?, next_attempt_at = ?"
                               " WHERE delivery_id = ?",
                               (attempts, "2000-01-01T00:00:00+00:00", delivery_id))
        app.webhooks.notify()

        def settled() -> list[dict[str, Any]] | None:
            rows = client.get("/webhooks/deliveries").json()
            return rows if all(r["status"] != "pending" for r in rows) else None

        rows = {r["delivery_id"]: r for r in until(settled, "both deliveries to settle")}
    assert rows[ids[0]]["status"] == "succeeded" and rows[ids[0]]["attempts"] == 2
    assert rows[ids[1]]["status"] == "failed" and "cut short" in rows[ids[1]]["last_error"]
    assert [r["body"] for r in rec.requests] == [b'{"forged":true}']


async def test_concurrent_claims_take_disjoint_rows(new_database: NewDatabase,
                                                    tmp_path: Path) -> None:
    """Two processes (two storages on one database) claiming at once never share a row."""
    url = new_database()
    stores = [create_storage(url, default_path=tmp_path / "x.sqlite") for _ in range(2)]
    for s in stores:
        await s.open()
        await s.migrate()
    try:
        repos = [WebhookDeliveries(s) for s in stores]
        ids = [new_id() for _ in range(40)]
        for delivery_id in ids:
            await repos[0].insert("default", delivery_id, {"run_id": new_id()}, "https://x.test/",
                                  b"{}", 5)

        async def drain(repo: WebhookDeliveries) -> list[str]:
            got: list[str] = []
            while True:
                rows, _ = await repo.claim(3, lease_seconds=60)
                if not rows:
                    return got
                got.extend(r["delivery_id"] for r in rows)
                await asyncio.sleep(0)

        a, b = await asyncio.gather(drain(repos[0]), drain(repos[1]))
        assert not set(a) & set(b)
        assert sorted(a + b) == sorted(ids)
        # Claimed rows are leased: nothing is due until the lease expires.
        assert (await repos[0].claim(10, lease_seconds=60))[0] == []
        # An outcome recorded for a stale attempt is ignored.
        assert not await repos[0].record(ids[0], 7, status="succeeded", status_code=200,
                                         error=None)
        assert await repos[0].record(ids[0], 1, status="succeeded", status_code=200, error=None)
    finally:
        for s in stores:
            await s.close()


def test_sign_and_verify_roundtrip() -> None:
    body = b'{"run_id":"x"}'
    header = sign("k", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature("k", body, header, now=1_700_000_100) == 1_700_000_000
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_signature("k", body, header, now=1_700_000_000 + 301)
    # Rotation: any matching v1 entry is accepted.
    rotated = header + ",v1=" + "0" * 64
    assert verify_signature("k", body, rotated, now=1_700_000_000)
    for bad in (None, "", "v1=abc", "t=x,v1=abc", "t=1700000000"):
        with pytest.raises(InvalidSignature):
            verify_signature("k", body, bad, now=1_700_000_000)
