"""End-to-end fixtures: a real `dockyard dev` process on a free port, driven by langgraph-sdk."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_DATABASE, postgres_databases

PROJECT = Path(__file__).parent / "project"
DOCKYARD = Path(sys.executable).parent / "dockyard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_counts(lines: list[str]) -> tuple[Counter[str], Counter[str]]:
    """How often each node started and ended, from the "start X" / "end X" lines that the
    `crashable` graphs (tests/e2e/project/graphs.py) write to DOCKYARD_E2E_LOG."""
    starts: Counter[str] = Counter()
    ends: Counter[str] = Counter()
    for line in lines:
        kind, _, node = line.partition(" ")
        if kind == "start":
            starts[node] += 1
        elif kind == "end":
            ends[node] += 1
    return starts, ends


def http_ok(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ok", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_up(
    proc: subprocess.Popen[bytes], log: Path, timeout: float, ready: Callable[[], bool]
) -> None:
    """Poll ``ready`` until it holds; fail with the process's log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited early:\n{log.read_text()}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.args!r} not ready after {timeout}s:\n{log.read_text()}")


@dataclass
class Server:
    url: str
    port: int
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    project: Path = PROJECT

    def start(self, timeout: float = 30.0) -> None:
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            self.proc = self._spawn(log)
        wait_until_up(self.proc, self.log_path, timeout, lambda: http_ok(self.url))

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(DOCKYARD), "dev", str(self.project), "--port", str(self.port), "--no-reload",
             "--data-dir", str(self.data_dir)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


def make_server(tmp: Path, *, project: Path = PROJECT, **extra_env: str) -> Server:
    """A server on a fresh database of the dialect DOCKYARD_TEST_DATABASE selects.

    PostgreSQL: a database of its own (restarts of this server keep it), dropped at the end
    of the session; SQLite: the default file under its data dir.
    """
    port = free_port()
    env = {**os.environ, "DOCKYARD_HEARTBEAT_SECONDS": "0.5"}
    env.pop("DOCKYARD_DATABASE_URL", None)
    if TEST_DATABASE == "postgres":
        env["DOCKYARD_DATABASE_URL"] = postgres_databases().create()
        # On PostgreSQL a restarted server cannot tell its dead runs from another worker's:
        # it resumes them once their lease expires, so crash tests use a short one.
        env["DOCKYARD_LEASE_SECONDS"] = "5"
    env.update(extra_env)
    srv = Server(url=f"http://127.0.0.1:{port}", port=port, data_dir=tmp / "data", env=env,
                 log_path=tmp / "server.log", project=project)
    return srv


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the session (tests create their own threads, so they don't collide)."""
    srv = make_server(tmp_path_factory.mktemp("dockyard"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own (for crash and restart tests); started by the test."""
    srv = make_server(tmp_path)
    yield srv
    srv.stop(signal.SIGKILL)


@pytest.fixture
def url(server: Server) -> str:
    return server.url


@pytest.fixture
async def client(server: Server):  # type: ignore[no-untyped-def]
    """An async langgraph-sdk client, closed after the test."""
    from langgraph_sdk import get_client

    c = get_client(url=server.url)
    yield c
    await c.aclose()


@pytest.fixture
def sync_client(server: Server):  # type: ignore[no-untyped-def]
    from langgraph_sdk import get_sync_client

    c = get_sync_client(url=server.url)
    yield c
    c.close()
