"""Webhooks out and triggers in against a real `dockyard dev` process: a signed webhook that
fails once is retried and shows in the delivery log; a GitHub event delivered twice starts one
run whose input is mapped from the payload."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PROJECT, Server, make_server
from tests.webhook_support import receiver, until

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "e2e-outgoing-secret"
GITHUB_SECRET = "e2e-github-secret"


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("webhooks")
    project = tmp / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(".dockyard", "__pycache__"))
    config = json.loads((project / "langgraph.json").read_text())
    config["env"]["E2E_GITHUB_SECRET"] = GITHUB_SECRET
    config["dockyard"] = {"triggers": {"github-push": {
        "assistant_id": "three_steps", "scheme": "github", "secret_env": "E2E_GITHUB_SECRET",
        "input": {"steps": ["$.head_commit.id"]}, "thread_id": "$.repository.id",
    }}}
    (project / "langgraph.json").write_text(json.dumps(config))
    srv = make_server(tmp, project=project, DOCKYARD_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      DOCKYARD_WEBHOOK_BACKOFF_SECONDS="0.05",
                      DOCKYARD_WEBHOOK_BACKOFF_MAX_SECONDS="0.2")
    srv.start()
    yield srv
    srv.stop(signal.SIGTERM)


def test_signed_webhook_is_retried_and_logged(hook_server: Server) -> None:
    with receiver([500], secret=WEBHOOK_SECRET) as rec, httpx.Client(base_url=hook_server.url) as c:
        thread = c.post("/threads", json={}).json()
        run = c.post(f"/threads/{thread['thread_id']}/runs", json={
            "assistant_id": "three_steps", "input": {"steps": []}, "webhook": rec.url}).json()

        def settled() -> Any:
            rows = c.get(f"/runs/{run['run_id']}/webhooks").json()
            return rows[0] if rows and rows[0]["status"] != "pending" else None

        delivery = until(settled, "the webhook delivery")
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 2
    assert [r["answered"] for r in rec.requests] == [500, 200]
    assert all(r["signature"] == "valid" for r in rec.requests)
    body = json.loads(rec.requests[-1]["body"])
    assert body["run_id"] == run["run_id"] and body["values"] == {"steps": ["a", "b", "c"]}
    assert WEBHOOK_SECRET not in hook_server.logs()


def test_github_event_delivered_twice_starts_one_run(hook_server: Server) -> None:
    payload = json.dumps({"repository": {"id": 7, "full_name": "acme/app"},
                          "head_commit": {"id": "c0ffee"}}).encode()
    headers = {"content-type": "application/json", "x-github-event": "push",
               "x-github-delivery": "e2e-delivery-1",
               "x-hub-signature-256": "sha256=" + hmac.new(GITHUB_SECRET.encode(), payload,
                                                           hashlib.sha256).hexdigest()}
    with httpx.Client(base_url=hook_server.url) as c:
        first = c.post("/triggers/github-push", content=payload, headers=headers)
        assert first.status_code == 202, first.text
        again = c.post("/triggers/github-push", content=payload, headers=headers)
        assert again.status_code == 200 and again.json()["run_id"] == first.json()["run_id"]
        tid = first.json()["thread_id"]
        c.get(f"/threads/{tid}/runs/{first.json()['run_id']}/join")
        assert [r["run_id"] for r in c.get(f"/threads/{tid}/runs").json()] == [
            first.json()["run_id"]]
        assert c.get(f"/threads/{tid}/state").json()["values"] == {
            "steps": ["c0ffee", "a", "b", "c"]}
        forged = c.post("/triggers/github-push", content=payload,
                        headers={**headers, "x-hub-signature-256": "sha256=" + "0" * 64})
        assert forged.status_code == 401
    assert GITHUB_SECRET not in hook_server.logs()
