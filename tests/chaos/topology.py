"""A production topology on loopback: API processes and worker processes sharing PostgreSQL and
Redis, each a real `dockyard` process (used by the multi-process e2e and chaos tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import postgres_databases
from tests.e2e.conftest import PROJECT, free_port, http_ok, wait_until_up
from tests.redis_support import require_redis

DOCKYARD = Path(sys.executable).parent / "dockyard"


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        url = self.url
        wait_until_up(self.proc, self.log, timeout,
                      (lambda: http_ok(url)) if url is not None
                      else (lambda: "Concurrency:" in self.log.read_text()))

    def send(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        self.send(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@dataclass
class Topology:
    tmp: Path
    env: dict[str, str]
    apis: list[Proc] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)

    @classmethod
    def create(cls, tmp: Path, **extra_env: str) -> Topology:
        database_url = postgres_databases().create()
        redis_url = require_redis()
        env = {**os.environ, "DOCKYARD_DATABASE_URL": database_url,
               "DOCKYARD_REDIS_URL": redis_url, "DOCKYARD_HEARTBEAT_SECONDS": "0.5",
               "DOCKYARD_LOG_LEVEL": "info", **extra_env}
        return cls(tmp=tmp, env=env)

    def add_api(self, project: Path = PROJECT) -> Proc:
        port = free_port()
        p = Proc(f"api{len(self.apis)}", [str(DOCKYARD), "serve", str(project), "--port", str(port),
                  "--insecure"],
                 self.env, self.tmp / f"api{len(self.apis)}.log", url=f"http://127.0.0.1:{port}")
        self.apis.append(p.start())
        return p

    def add_worker(self, concurrency: int = 4, project: Path = PROJECT) -> Proc:
        p = Proc(f"worker{len(self.workers)}",
                 [str(DOCKYARD), "worker", str(project), "--concurrency", str(concurrency),
                  "--insecure"],
                 self.env, self.tmp / f"worker{len(self.workers)}.log")
        self.workers.append(p.start())
        return p

    def wait_ready(self) -> None:
        for p in [*self.apis, *self.workers]:
            p.wait_ready()

    def stop(self) -> None:
        for p in [*self.apis, *self.workers]:
            p.stop(signal.SIGKILL, timeout=5)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log.read_text()}" for p in [*self.apis, *self.workers]
                         if p.log.exists())
