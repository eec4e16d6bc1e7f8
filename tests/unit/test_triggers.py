"""Event triggers: ``POST /triggers/{name}`` verifies GitHub, Slack and Dockyard signatures
(with the replay window), maps the payload to the run's input, derives threads, and starts one
run per event however often the event is delivered."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from dockyard.api.app import create_app
from dockyard.config import Settings, load_project
from dockyard.errors import ConfigError, Conflict
from dockyard.services import jsonpath
from dockyard.services.core import check_project_features
from dockyard.services.ids import new_id
from dockyard.webhooks import sign
from tests.conftest import NewDatabase
from tests.webhook_support import until, write_project

GH, SLACK, DY = "gh-secret-t", "slack-secret-t", "dockyard-secret-t"

TRIGGERS = {
    "github-push": {
        "assistant_id": "echo", "scheme": "github", "secret_env": "TRIG_TEST_GH",
        "input": {"repo": "$.repository.full_name", "head": "$.commits[0].id", "kind": "push",
                  "literal": "$$not-a-path", "missing": "$.nope.nothing"},
        "thread_id": "$.repository.id",
    },
    "slack-events": {
        "assistant_id": "echo", "scheme": "slack", "secret_env": "TRIG_TEST_SLACK",
        "input": {"text": "$.event.text", "user": "$.user_name"},
    },
    "from-dockyard": {
        "assistant_id": "echo", "scheme": "dockyard", "secret_env": "TRIG_TEST_DY",
        "input": "$", "metadata": {"source": "upstream"},
    },
    "team-b-hook": {
        "assistant_id": "echo", "scheme": "dockyard", "secret_env": "TRIG_TEST_DY",
        "tenant": "team-b", "thread_id": "$.team",
    },
}


@pytest.fixture
def client(tmp_path: Path, new_database: NewDatabase,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for env, value in (("TRIG_TEST_GH", GH), ("TRIG_TEST_SLACK", SLACK), ("TRIG_TEST_DY", DY)):
        monkeypatch.setenv(env, value)
    write_project(tmp_path, dockyard={"triggers": TRIGGERS})
    settings = Settings.from_env({"database_url": new_database(),
                                  "data_dir": str(tmp_path / "data")}, environ={})
    with TestClient(create_app(load_project(tmp_path), settings)) as c:
        yield c


def github(client: TestClient, payload: Any, *, delivery: str | None = "d-1",
           secret: str = GH, event: str = "push", raw: bytes | None = None) -> Any:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"content-type": "application/json", "x-github-event": event,
               "x-hub-signature-256": "sha256=" + hmac.new(secret.encode(), body,
                                                           hashlib.sha256).hexdigest()}
    if delivery is not None:
        headers["x-github-delivery"] = delivery
    return client.post("/triggers/github-push", content=body, headers=headers)


def slack(client: TestClient, body: bytes, *, secret: str = SLACK, ts: int | None = None,
          content_type: str = "application/json") -> Any:
    stamp = str(int(time.time()) if ts is None else ts)
    sig = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return client.post("/triggers/slack-events", content=body, headers={
        "content-type": content_type, "x-slack-request-timestamp": stamp,
        "x-slack-signature": f"v0={sig}"})


def thread_values(client: TestClient, thread_id: str) -> Any:
    def done() -> Any:
        runs = client.get(f"/threads/{thread_id}/runs").json()
        if runs and all(r["status"] == "success" for r in runs):
            return client.get(f"/threads/{thread_id}/state").json()["values"]
        return None

    return until(done, f"the runs of thread {thread_id}")


PUSH = {"repository": {"id": 42, "full_name": "acme/app"}, "commits": [{"id": "c0ffee"}]}


def test_github_push_starts_one_run_with_the_mapped_input(client: TestClient) -> None:
    first = github(client, PUSH)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["duplicate"] is False and answer["trigger"] == "github-push"
    assert thread_values(client, answer["thread_id"]) == {"got": {
        "repo": "acme/app", "head": "c0ffee", "kind": "push", "literal": "$not-a-path",
        "missing": None}}
    # GitHub redelivers the same event (same X-GitHub-Delivery): the first run, no new one.
    again = github(client, PUSH)
    assert again.status_code == 200
    assert again.json()["run_id"] == answer["run_id"] and again.json()["duplicate"] is True
    runs = client.get(f"/threads/{answer['thread_id']}/runs").json()
    assert [r["run_id"] for r in runs] == [answer["run_id"]]
    assert runs[0]["metadata"] == {"trigger": "github-push", "trigger_event_id": "d-1"}
    # Another event of the same repository goes to the same thread (enqueued behind it).
    other = github(client, PUSH, delivery="d-2")
    assert other.status_code == 202 and other.json()["thread_id"] == answer["thread_id"]
    assert other.json()["run_id"] != answer["run_id"]


def test_github_signature_is_required(client: TestClient) -> None:
    bad = github(client, PUSH, secret="wrong")
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_signature"
    missing = client.post("/triggers/github-push", json=PUSH, headers={"x-github-delivery": "x"})
    assert missing.status_code == 401 and "X-Hub-Signature-256" in missing.json()["detail"]
    assert client.get("/webhooks/deliveries").status_code == 200  # the server is fine


def test_github_ping_starts_nothing(client: TestClient) -> None:
    resp = github(client, {"zen": "Keep it simple."}, event="ping")
    assert resp.status_code == 200 and resp.json()["event"] == "ping"


def test_bad_bodies_are_client_errors(client: TestClient) -> None:
    malformed = github(client, None, raw=b"{not json")
    assert malformed.status_code == 400 and malformed.json()["code"] == "invalid_trigger_payload"
    empty = github(client, None, raw=b"")
    assert empty.status_code == 400
    no_thread = github(client, {"repository": {"full_name": "acme/app"}}, delivery="d-9")
    assert no_thread.status_code == 422
    assert "$.repository.id" in no_thread.json()["detail"]
    # The failed delivery did not burn its idempotency key: a fixed redelivery goes through.
    assert github(client, PUSH, delivery="d-9").status_code == 202


def test_unknown_trigger(client: TestClient) -> None:
    resp = client.post("/triggers/nope", json={})
    assert resp.status_code == 404 and resp.json()["code"] == "trigger_not_found"


def test_slack_signature_and_replay_window(client: TestClient) -> None:
    body = json.dumps({"type": "event_callback", "event_id": "Ev1",
                       "event": {"text": "deploy please"}}).encode()
    ok = slack(client, body)
    assert ok.status_code == 202, ok.text
    assert slack(client, body).json()["duplicate"] is True  # Slack retries: same event_id
    assert slack(client, body, secret="wrong").status_code == 401
    expired = slack(client, body, ts=int(time.time()) - 301)
    assert expired.status_code == 401 and "300s" in expired.json()["detail"]
    future = slack(client, body, ts=int(time.time()) + 400)
    assert future.status_code == 401
    unsigned = client.post("/triggers/slack-events", content=body)
    assert unsigned.status_code == 401


def test_slack_url_verification_and_form_commands(client: TestClient) -> None:
    challenge = slack(client, json.dumps({"type": "url_verification", "challenge": "abc"}).encode())
    assert challenge.status_code == 200 and challenge.json() == {"challenge": "abc"}
    form = urlencode({"command": "/deploy", "user_name": "ada", "text": "prod"}).encode()
    resp = slack(client, form, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 202, resp.text


def test_dockyard_scheme_and_generic_idempotency_key(client: TestClient) -> None:
    body = json.dumps({"hello": "world"}).encode()

    def post(key: str, **kw: Any) -> Any:
        return client.post("/triggers/from-dockyard", content=body, headers={
            "content-type": "application/json", "dockyard-webhook-id": key,
            "dockyard-signature": sign(kw.get("secret", DY), body, timestamp=kw.get("t"))})

    first = post("w-1")
    assert first.status_code == 202
    assert post("w-1").json()["run_id"] == first.json()["run_id"]
    assert post("w-1", secret="nope").status_code == 401
    stale = post("w-2", t=int(time.time()) - 3600)
    assert stale.status_code == 401 and "tolerance" in stale.json()["detail"]


def test_a_trigger_starts_runs_in_its_configured_tenant(client: TestClient) -> None:
    body = json.dumps({"team": "b"}).encode()
    answer = client.post("/triggers/team-b-hook", content=body, headers={
        "content-type": "application/json", "dockyard-webhook-id": "b-1",
        "dockyard-signature": sign(DY, body)})
    assert answer.status_code == 202, answer.text
    tid = answer.json()["thread_id"]
    # Not the anonymous caller's (default) tenant: the thread is team-b's alone.
    assert client.get(f"/threads/{tid}").status_code == 404
    dockyard = client.app.state.dockyard  # type: ignore[attr-defined]
    row = client.portal.call(dockyard.threads.get_row, "team-b", tid)  # type: ignore[union-attr]
    assert row["thread_id"] == tid


def test_concurrent_redeliveries_start_one_run(client: TestClient) -> None:
    app = client.app.state.dockyard  # type: ignore[attr-defined]
    body = json.dumps(PUSH).encode()
    headers = {"content-type": "application/json", "x-github-delivery": "race-1",
               "x-hub-signature-256": "sha256=" + hmac.new(GH.encode(), body,
                                                           hashlib.sha256).hexdigest()}

    async def burst() -> list[Any]:
        calls = [app.triggers.handle("default", "github-push", body, headers) for _ in range(8)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = client.portal.call(burst)  # type: ignore[union-attr]
    started = [r for r in results if isinstance(r, tuple) and r[0] == 202]
    assert len(started) == 1
    for r in results:  # the others: the first run, or "in progress, retry" (409)
        assert (isinstance(r, tuple) and r[1]["run_id"] == started[0][1]["run_id"]) or \
            isinstance(r, Conflict)


def test_stale_reservation_is_taken_over(client: TestClient) -> None:
    """A process that died between reserving the key and creating the run leaves a row that
    never started; a later redelivery takes it over instead of being refused forever."""
    app = client.app.state.dockyard  # type: ignore[attr-defined]
    client.portal.call(app.storage.execute,  # type: ignore[union-attr]
                       "INSERT INTO trigger_events (tenant_id, trigger_name, idempotency_key,"
                       " run_id, started, created_at) VALUES ('default', 'github-push', 'd-s', ?,"
                       " 0, ?)", (new_id(), "2000-01-01T00:00:00+00:00"))
    assert github(client, PUSH, delivery="d-s").status_code == 202
    assert github(client, PUSH, delivery="d-s").status_code == 200


# ---- config -------------------------------------------------------------------------------
def _trigger(**overrides: Any) -> dict[str, Any]:
    spec = {"assistant_id": "echo", "scheme": "github", "secret_env": "X"}
    spec.update(overrides)
    return {k: v for k, v in spec.items() if v is not None}


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ({"crons": {}}, "dockyard.crons", "unknown key"),
        ({"triggers": []}, "dockyard.triggers", "expected an object"),
        ({"triggers": {"a/b": _trigger()}}, "dockyard.triggers.a/b", "URL path segment"),
        ({"triggers": {"t": _trigger(assistant_id=None)}}, "dockyard.triggers.t.assistant_id",
         "required"),
        ({"triggers": {"t": _trigger(assistant_id="ghost")}}, "dockyard.triggers.t.assistant_id",
         "neither a graph"),
        ({"triggers": {"t": _trigger(scheme="stripe")}}, "dockyard.triggers.t.scheme",
         "one of"),
        ({"triggers": {"t": _trigger(secret_env=None)}}, "dockyard.triggers.t.secret_env",
         "required"),
        ({"triggers": {"t": _trigger(input={"a": "$.x[oops]"})}}, "dockyard.triggers.t.input.a",
         "invalid path"),
        ({"triggers": {"t": _trigger(idempotency="cookie:x")}}, "dockyard.triggers.t.idempotency",
         "a path starts with '$'"),
        ({"triggers": {"t": _trigger(thread_id="repo")}}, "dockyard.triggers.t.thread_id",
         "a path starts with '$'"),
        ({"triggers": {"t": _trigger(multitask_strategy="drop")}},
         "dockyard.triggers.t.multitask_strategy", "expected one of"),
        ({"triggers": {"t": _trigger(secret="inline")}}, "dockyard.triggers.t.secret",
         "unknown key"),
        ({"triggers": {"t": _trigger(tenant="team b")}}, "dockyard.triggers.t.tenant",
         "expected a tenant id"),
        ({"webhook_secrets": {"echo": "not a var"}}, "dockyard.webhook_secrets.echo",
         "environment variable"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, section: dict[str, Any], key: str,
                                    message: str) -> None:
    project = load_project(write_project(tmp_path, dockyard=section))
    with pytest.raises(ConfigError) as err:
        check_project_features(project)
    assert f"key '{key}'" in str(err.value) and message in str(err.value)
    assert "langgraph.json" in str(err.value)


def test_missing_secret_stops_the_server_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIG_TEST_UNSET", raising=False)
    write_project(tmp_path, dockyard={"triggers": {"t": _trigger(secret_env="TRIG_TEST_UNSET")}})
    settings = Settings.from_env({"data_dir": str(tmp_path / "data")}, environ={})
    with pytest.raises(ConfigError, match=r"dockyard\.triggers\.t\.secret_env.*TRIG_TEST_UNSET"), \
            TestClient(create_app(load_project(tmp_path), settings)):
        pass


def test_toml_config(tmp_path: Path) -> None:
    (tmp_path / "echo.py").write_text("async def echo(inputs):\n    return inputs\n")
    (tmp_path / "dockyard.toml").write_text(
        '[graphs]\necho = "./echo.py:echo"\n\n'
        '[dockyard.triggers.gh]\nassistant_id = "echo"\nscheme = "github"\n'
        'secret_env = "GH"\ninput = { repo = "$.repository.full_name" }\n')
    section = check_project_features(load_project(tmp_path))
    assert section.triggers["gh"].input == {"repo": "$.repository.full_name"}
    assert section.triggers["gh"].idempotency == "header:X-GitHub-Delivery"


def test_jsonpath() -> None:
    data = {"a": {"b": [10, {"c d": "x"}]}, "n": None}
    assert jsonpath.parse("$") == ()
    assert jsonpath.parse("$.a.b[1]['c d']") == ("a", "b", 1, "c d")
    assert jsonpath.resolve(data, jsonpath.parse("$.a.b[1][\"c d\"]")) == "x"
    assert jsonpath.resolve(data, jsonpath.parse("$.a.b[-2]")) == 10
    assert jsonpath.resolve(data, jsonpath.parse("$.a.b[5]")) is None
    assert jsonpath.resolve(data, jsonpath.parse("$.a.zz.y")) is None
    assert jsonpath.render({"k": ["$.a.b[0]", "$$lit", 3]}, data) == {"k": [10, "$lit", 3]}
    for bad in ("a.b", "$.", "$..a", "$[x]", "$.a b"):
        with pytest.raises(jsonpath.PathError):
            jsonpath.parse(bad)

