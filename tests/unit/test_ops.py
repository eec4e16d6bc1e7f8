"""Operations: /metrics (Prometheus), /ok?check_db=1, JSON logs, OpenTelemetry run spans."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from dockyard.api.app import create_app
from dockyard.api.ops import serve_ops
from dockyard.config import Settings, load_project
from dockyard.errors import ConfigError, StorageError
from dockyard.logs import JsonFormatter, logging_config, mask_secrets, parse_message
from dockyard.runtime import tracing
from dockyard.services.core import Dockyard
from tests.conftest import NewDatabase

GRAPHS = """
import asyncio, operator
from typing import Annotated, TypedDict
from langgraph.graph import StateGraph, START, END

class S(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]
    fail: bool

def step(name):
    async def node(s):
        if s.get("fail"):
            raise ValueError("boom")
        return {"steps": [name]}
    return node

b = StateGraph(S)
b.add_node("s1", step("s1")); b.add_node("s2", step("s2"))
b.add_edge(START, "s1"); b.add_edge("s1", "s2"); b.add_edge("s2", END)
graph = b.compile()
"""


def _project(tmp_path: Path) -> Path:
    (tmp_path / "g.py").write_text(GRAPHS)
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": {"g": "./g.py:graph"}}))
    return tmp_path


def _settings(tmp_path: Path, database_url: str | None = None) -> Settings:
    """SQLite or PostgreSQL, as DOCKYARD_TEST_DATABASE says (``new_database``)."""
    return Settings.from_env({"data_dir": str(tmp_path / "data"), "database_url": database_url},
                             environ={})


@pytest.fixture
async def app(tmp_path: Path, new_database: NewDatabase) -> AsyncIterator[Dockyard]:
    dockyard = Dockyard(load_project(_project(tmp_path)), _settings(tmp_path, new_database()))
    await dockyard.start()
    yield dockyard
    await dockyard.stop()


async def _run(app: Dockyard, **input: Any) -> dict[str, Any]:
    thread = await app.threads.create("default")
    run = await app.runs.create("default", thread["thread_id"], {"assistant_id": "g", "input": input})
    for _ in range(400):
        row = await app.runs.queue.get("default", run["run_id"])
        assert row is not None
        if row["status"] not in ("pending", "running"):
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run['run_id']} did not finish")


def _families(text: bytes | str) -> dict[str, Any]:
    raw = text.decode() if isinstance(text, bytes) else text
    return {f.name: f for f in text_string_to_metric_families(raw)}


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample}{labels} in {families[family].samples}")


# ---- /metrics ----------------------------------------------------------------------------------

async def test_metrics_after_runs(app: Dockyard) -> None:
    assert (await _run(app, steps=[]))["status"] == "success"
    assert (await _run(app, steps=[]))["status"] == "success"
    assert (await _run(app, fail=True))["status"] == "error"
    thread = await app.threads.create("default")
    await app.runs.create("default", thread["thread_id"],
                          {"assistant_id": "g", "input": {}, "after_seconds": 3600})

    fams = _families(await app.metrics_text())
    assert _value(fams, "dockyard_queue_depth", "dockyard_queue_depth",
                  tenant="default", status="pending", priority="0") == 1
    assert _value(fams, "dockyard_run_queue_latency_seconds",
                  "dockyard_run_queue_latency_seconds_count") == 3
    latency_sum = _value(fams, "dockyard_run_queue_latency_seconds",
                         "dockyard_run_queue_latency_seconds_sum")
    assert 0 <= latency_sum < 10
    duration = "dockyard_run_duration_seconds"
    assert _value(fams, duration, f"{duration}_count", status="success") == 2
    assert _value(fams, duration, f"{duration}_count", status="error") == 1
    assert _value(fams, "dockyard_runs_active", "dockyard_runs_active") == 0
    assert _value(fams, "dockyard_workers_active", "dockyard_workers_active") == 1
    assert _value(fams, "dockyard_worker_concurrency", "dockyard_worker_concurrency") == 16
    assert _value(fams, "dockyard_worker_info", "dockyard_worker_info",
                  worker_id=app.pool.worker_id, role="all") == 1
    assert _value(fams, "dockyard_worker_heartbeat_timestamp_seconds",
                  "dockyard_worker_heartbeat_timestamp_seconds") > 1e9
    assert _value(fams, "dockyard_lease_expiries", "dockyard_lease_expiries_total",
                  outcome="requeued") == 0
    assert _value(fams, "dockyard_run_retries", "dockyard_run_retries_total") == 0


async def test_lease_expiry_and_retry_are_counted(app: Dockyard) -> None:
    thread = await app.threads.create("default")
    await app.pool.stop(grace_seconds=0)
    run = await app.runs.create("default", thread["thread_id"], {"assistant_id": "g", "input": {}})
    await app.storage.execute(  # claimed by a worker that vanished
        "UPDATE runs SET status = 'running', worker_id = 'ghost', attempts = 1,"
        " started_at = created_at, lease_until = '2000-01-01T00:00:00+00:00' WHERE run_id = ?",
        (run["run_id"],),
    )
    pool = type(app.pool)(app.deps, concurrency=2, lease_seconds=1.0, embedded=False)
    await pool.start()  # sweeps the expired lease, then claims the run again (attempt 2)
    try:
        for _ in range(400):
            row = await app.runs.queue.get("default", run["run_id"])
            if row and row["status"] == "success":
                break
            await asyncio.sleep(0.02)
        fams = _families(await app.metrics_text())
    finally:
        await pool.stop()
    assert _value(fams, "dockyard_lease_expiries", "dockyard_lease_expiries_total",
                  outcome="requeued") == 1
    assert _value(fams, "dockyard_run_retries", "dockyard_run_retries_total") == 1
    # A resumed run was started by its first claim: no second queue-latency sample.
    assert _value(fams, "dockyard_run_queue_latency_seconds",
                  "dockyard_run_queue_latency_seconds_count") == 0
    assert _value(fams, "dockyard_run_duration_seconds", "dockyard_run_duration_seconds_count",
                  status="success") == 1


def test_metrics_endpoint_and_separate_registries(tmp_path: Path, new_database: NewDatabase) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    app1 = create_app(load_project(_project(one)), _settings(one, new_database()))
    # A second app in the same process: its own registry, no duplicate-metric error.
    app2 = create_app(load_project(_project(two)), _settings(two, new_database()))
    with TestClient(app1) as c1, TestClient(app2) as c2:
        assert c1.post("/runs/wait", json={"assistant_id": "g", "input": {}}).status_code == 200
        r1, r2 = c1.get("/metrics"), c2.get("/metrics")
    assert r1.status_code == 200
    assert r1.headers["content-type"].startswith("text/plain")
    duration = "dockyard_run_duration_seconds"
    assert _value(_families(r1.text), duration, f"{duration}_count", status="success") == 1
    assert not [s for s in _families(r2.text)[duration].samples if s.name.endswith("_count")]


# ---- /ok?check_db=1 ----------------------------------------------------------------------------

def test_ok_and_check_db(tmp_path: Path, new_database: NewDatabase) -> None:
    app = create_app(load_project(_project(tmp_path)), _settings(tmp_path, new_database()))
    with TestClient(app) as client:
        assert client.get("/ok").json() == {"ok": True}
        resp = client.get("/ok", params={"check_db": 1})
        assert resp.status_code == 200
        body = resp.json()
        assert body["ok"] is True
        for name in ("database", "bus"):
            assert body["checks"][name]["ok"] is True
            assert body["checks"][name]["latency_ms"] >= 0

        client.portal.call(app.state.dockyard.storage.close)
        resp = client.get("/ok?check_db=1")
        assert resp.status_code == 503
        body = resp.json()
        assert body["ok"] is False
        assert body["checks"]["database"] == {
            "ok": False, "latency_ms": body["checks"]["database"]["latency_ms"],
            "error": "Storage is not open",
        }
        assert body["checks"]["bus"]["ok"] is True
        assert "database: Storage is not open" in body["detail"]
        assert client.get("/ok").status_code == 200  # liveness does not depend on the database


def test_check_db_never_shows_a_password(tmp_path: Path) -> None:
    app = create_app(load_project(_project(tmp_path)), _settings(tmp_path))
    dockyard: Dockyard = app.state.dockyard

    async def failing_ping() -> None:
        raise StorageError("cannot connect to postgresql://dock:hunter22@db:5432/x (password "
                           "hunter22 rejected)")

    with TestClient(app) as client:
        dockyard.storage.ping = failing_ping  # type: ignore[method-assign]
        object.__setattr__(dockyard.settings, "database_url", "postgresql://dock:hunter22@db/x")
        resp = client.get("/ok?check_db=true")
    assert resp.status_code == 503
    assert "hunter22" not in resp.text
    assert "postgresql://dock:***@db:5432/x" in resp.json()["checks"]["database"]["error"]


async def test_worker_ops_server(app: Dockyard) -> None:
    await _run(app, steps=[])
    server = await serve_ops(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            metrics = await http.get("/metrics")
            ok = await http.get("/ok?check_db=1")
            missing = await http.get("/nope")
    finally:
        server.close()
        await server.wait_closed()
    assert metrics.status_code == 200
    assert "dockyard_run_duration_seconds" in _families(metrics.text)
    assert ok.status_code == 200 and ok.json()["checks"]["database"]["ok"] is True
    assert missing.status_code == 404


# ---- logs ----------------------------------------------------------------------------------------

def test_parse_message_and_mask() -> None:
    assert parse_message("run_failed run_id=r1 error=ValueError: boom x=1") == (
        "run_failed", {"run_id": "r1", "error": "ValueError: boom", "x": "1"})
    assert parse_message("Started server process [42]") == (None, {})
    assert mask_secrets("db=postgresql://u:p%40ss@h:5432/d and redis://:pw@r:6379/0") == (
        "db=postgresql://u:***@h:5432/d and redis://:***@r:6379/0")
    assert mask_secrets("http://host/path?a=b") == "http://host/path?a=b"


def test_json_log_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dockyard.test_ops")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("run_failed run_id=%s error=%s: %s", "r1", "ValueError", "boom")
        try:
            raise RuntimeError("cannot reach redis://:s3cret@cache:6379")
        except RuntimeError:
            logger.exception("heartbeat_failed worker=%s", "w1", extra={"tenant": "t1"})
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "warning"
    assert first["logger"] == "dockyard.test_ops"
    assert first["event"] == "run_failed"
    assert first["run_id"] == "r1"
    assert first["error"] == "ValueError: boom"
    assert first["ts"].endswith("+00:00")
    assert second["event"] == "heartbeat_failed"
    assert second["worker"] == "w1"
    assert second["tenant"] == "t1"
    assert second["exc_type"] == "RuntimeError"
    assert "Traceback" in second["exc_info"]
    assert "s3cret" not in json.dumps(second)


def test_log_format_setting_and_config() -> None:
    assert Settings.from_env(environ={"DOCKYARD_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env(environ={}).log_format == "text"
    with pytest.raises(ConfigError, match="DOCKYARD_LOG_FORMAT"):
        Settings.from_env(environ={"DOCKYARD_LOG_FORMAT": "xml"})
    config = logging_config("debug", "json")
    assert config["formatters"]["dockyard"]["()"] == "dockyard.logs.JsonFormatter"


def test_json_logging_covers_uvicorn_loggers() -> None:
    code = (
        "import logging; from dockyard.logs import configure_logging;"
        "configure_logging('info', 'json');"
        "logging.getLogger('uvicorn.error').info('Started server process [%d]', 7);"
        "logging.getLogger('dockyard').info('dockyard_started role=%s db=%s', 'all',"
        " 'postgresql://u:pw@h/db')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         check=True)
    lines = [json.loads(line) for line in out.stderr.splitlines()]
    assert [line["logger"] for line in lines] == ["uvicorn.error", "dockyard"]
    assert lines[0]["message"] == "Started server process [7]"
    assert lines[1]["event"] == "dockyard_started"
    assert lines[1]["db"] == "postgresql://u:***@h/db"


# ---- OpenTelemetry -----------------------------------------------------------------------------

def test_tracing_off_without_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracing.tracer_provider_from_env() is None


def test_tracing_on_with_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr("opentelemetry.trace.set_tracer_provider", lambda p: None)
    provider = tracing.tracer_provider_from_env("worker")
    assert provider is not None
    assert provider.resource.attributes["dockyard.role"] == "worker"
    provider.shutdown()  # no spans: nothing is sent


def test_run_and_request_spans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_database: NewDatabase
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr("dockyard.services.core.tracer_provider_from_env", lambda role: provider)
    app = create_app(load_project(_project(tmp_path)), _settings(tmp_path, new_database()))
    with TestClient(app) as client:
        thread = client.post("/threads", json={}).json()
        run = client.post(f"/threads/{thread['thread_id']}/runs/wait",
                          json={"assistant_id": "g", "input": {"steps": []}})
        assert run.status_code == 200
        client.get("/ok")
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name == "dockyard.run"]
    assert len(runs) == 1
    attrs = dict(runs[0].attributes or {})
    assert attrs["dockyard.thread_id"] == thread["thread_id"]
    assert attrs["dockyard.graph_id"] == "g"
    assert attrs["dockyard.run.status"] == "success"
    assert attrs["dockyard.run_id"] and attrs["dockyard.assistant_id"]
    http = [s for s in spans if s.kind.name == "SERVER"]
    assert any("runs/wait" in s.name for s in http), [s.name for s in http]
    assert not any(s.name.endswith("/ok") for s in http)  # probes are not traced
