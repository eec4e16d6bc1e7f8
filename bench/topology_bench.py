"""The production topology (PostgreSQL + Redis, `dockyard serve` + `dockyard worker` processes)
measured side by side in one run, with the PostgreSQL-backed peers when they can be run.

    .venv/bin/python bench/topology_bench.py [--workers 1,2,4] [--n 500] [--concurrency 32]
                                             [--apis 1] [--skip-peers] [--skip-crash]

Sections (each on fresh databases; every process is real, on loopback):
  scaling      bench/graph3 (a → b → c) through `runs.wait` on pre-created threads, --concurrency
               in flight, with 1, 2 and 4 worker processes (each --concurrency / N run slots, so
               the cluster has as many slots as the client has runs in flight) behind --apis API
               processes. Also: `runs.wait` p50/p99 sequential (fresh thread each, thread creation
               not timed), queue latency (enqueue → start, from the runs table's created_at and
               started_at) idle (the sequential runs) and under load, write transactions per run
               (PostgreSQL's xid counter), and CPU time per run of each kind of process.
  crash        SIGKILL the worker executing a 6-step run (0.5 s a step) right after step 2's
               checkpoint; another worker (there are two) takes the run over when the lease
               expires. Timed from the kill to the run re-claimed and to the run finished, with
               DOCKYARD_LEASE_SECONDS unset (default) and 5.
  checkpoint   a 300-step run whose state is a list growing by one 2 KB message a step, with
               durability="sync": ms per step and the bytes of the checkpoint tables
               (pg_total_relation_size) against the bytes of the final state; through Dockyard's
               run path and, for reference, langgraph's AsyncPostgresSaver driven in-process.
  pgbench      this machine's PostgreSQL write rate: pgbench -i, then -c 8 -j 2 -T 15
               simple-update on a scratch database; the run path's write rate as a fraction.
  peers        stock langgraph-api with langgraph-runtime-pg==0.11.1.post1 and Aegra
               (aegra-api==0.11.0, REDIS_BROKER_ENABLED=true), each in a Python 3.12 venv under
               bench/.peer-* (created on first use), on the scaling section's workload. Skipped,
               saying so, when no python3.12 is found.

Prints markdown tables and writes bench/results/topology.json; process logs go to
bench/results/topology-*.log. PostgreSQL: DOCKYARD_BENCH_POSTGRES_URL (an admin connection,
default postgresql://postgres@127.0.0.1:5432/postgres); Redis: DOCKYARD_BENCH_REDIS_URL
(default redis://127.0.0.1:6379/0). Databases are named dockyard_bench_* and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import psycopg
from servers import BENCH_DIR, QUIET_ENV, REPO_DIR, RESULTS_DIR, VENV_BIN, ServerError, ServerProcess
from stats import percentile

PROJECT = BENCH_DIR / "topology"
GRAPH3_FILE = BENCH_DIR / "graph3" / "graph.py"
ADMIN_URL = os.environ.get(
    "DOCKYARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DOCKYARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DB_PREFIX = "dockyard_bench_"
RUN_INPUT: dict[str, Any] = {"count": 0}
EXPECTED = {"steps": ["a", "b", "c"], "count": 3}
CHAIN = ["s1", "s2", "s3", "s4", "s5", "s6"]
OP_TIMEOUT_S = 120.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PEER_PACKAGES = {
    "runtime-pg": ["langgraph-runtime-pg==0.11.1.post1", "langgraph-api", "uvicorn"],
    "aegra": ["aegra-api==0.11.0"],
}


def log(msg: str) -> None:
    print(msg, flush=True)


# --- databases ---------------------------------------------------------------------------------


class Databases:
    """Creates and drops the run's scratch databases (``dockyard_bench_*``)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: set[str] = set()

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)

    def url(self, name: str) -> str:
        return urlsplit(self.admin_url)._replace(path=f"/{name}").geturl()

    def create(self, tag: str) -> str:
        name = f"{DB_PREFIX}{tag}_{uuid.uuid4().hex[:8]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        self.created.add(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
        self.created.discard(name)

    def drop_all(self) -> None:
        for name in sorted(self.created):
            with contextlib.suppress(psycopg.Error):
                self.drop(self.url(name))

    @contextlib.contextmanager
    def fresh(self, tag: str) -> Iterator[str]:
        url = self.create(tag)
        try:
            yield url
        finally:
            self.drop(url)


def xid_now(url: str) -> int:
    """PostgreSQL's transaction id counter: only transactions that write take an id."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def checkpoint_bytes(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            t: int(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0])  # type: ignore[index]
            for t in CHECKPOINT_TABLES
        }


async def migrate(url: str) -> None:
    """Dockyard's migrations, applied once before the processes start."""
    from dockyard.storage import migrate_database

    await migrate_database(url, default_path=Path("unused"))


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without DOCKYARD_* settings (defaults mean defaults), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    return {**env, **QUIET_ENV, **extra}


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def pids_named(name: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    out.append(int(entry.name))
    return out


class Cluster:
    """``apis`` `dockyard serve` and ``workers`` `dockyard worker` processes on one database."""

    def __init__(self, name: str, database_url: str, *, apis: int, workers: int,
                 worker_concurrency: int, extra_env: dict[str, str] | None = None) -> None:
        self.name = name
        self.env = clean_env(DOCKYARD_DATABASE_URL=database_url, DOCKYARD_REDIS_URL=REDIS_URL,
                             **(extra_env or {}))
        self.worker_concurrency = worker_concurrency
        self.apis = [self._api(i) for i in range(apis)]
        self.workers = [self._worker(i) for i in range(workers)]
        self._next_worker = workers

    def _api(self, i: int) -> ServerProcess:
        port = free_port()
        argv = [str(VENV_BIN / "dockyard"), "serve", str(PROJECT), "--port", str(port), "--insecure"]
        return ServerProcess(f"{self.name}-api{i}", argv, port, cwd=REPO_DIR, env=self.env,
                             log_path=RESULTS_DIR / f"topology-{self.name}-api{i}.log")

    def _worker(self, i: int) -> ServerProcess:
        port = free_port()  # /metrics and /ok: how a worker tells it is up
        argv = [str(VENV_BIN / "dockyard"), "worker", str(PROJECT), "--concurrency",
                str(self.worker_concurrency), "--metrics-port", str(port), "--insecure"]
        return ServerProcess(f"{self.name}-worker{i}", argv, port, cwd=REPO_DIR, env=self.env,
                             log_path=RESULTS_DIR / f"topology-{self.name}-worker{i}.log")

    async def start(self, timeout: float = 60.0) -> None:
        procs = [*self.workers, *self.apis]
        await asyncio.gather(*(asyncio.to_thread(p.start, timeout) for p in procs))

    async def add_worker(self, timeout: float = 60.0) -> ServerProcess:
        worker = self._worker(self._next_worker)
        self._next_worker += 1
        await asyncio.to_thread(worker.start, timeout)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        for p in [*self.apis, *self.workers]:
            p.stop()

    @property
    def urls(self) -> list[str]:
        return [a.url for a in self.apis]

    def api_pids(self) -> list[int]:
        return [a.pid for a in self.apis if a.proc is not None]

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.proc is not None]


def worker_id_of(proc: ServerProcess) -> str | None:
    """The worker id a `dockyard worker` prints at start-up (runs.worker_id)."""
    assert proc.log_path is not None
    found = re.search(r"worker (worker-[0-9a-f]+)", proc.log_path.read_text(errors="replace"))
    return found.group(1) if found else None


# --- measuring ---------------------------------------------------------------------------------



def summarize_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    if not ms:
        return {"n": 0}
    return {"p50": statistics.median(ms), "p99": percentile(ms, 99),
            "mean": statistics.fmean(ms), "n": len(ms)}


def check(result: Any) -> None:
    values = result if isinstance(result, dict) else {}
    if values.get("steps") != EXPECTED["steps"] or values.get("count") != EXPECTED["count"]:
        raise RuntimeError(f"unexpected final state {result!r}")


def sdk_client(url: str) -> Any:
    """``get_client(url)``, except that idle connections are dropped after 2 s.

    httpx keeps an idle connection for 5 s and uvicorn closes one after 5 s idle: a request sent
    on a connection the server is closing at that moment fails with ``ReadError``. Expiring
    first on the client side keeps that race out of the figures.
    """
    import httpx
    from langgraph_sdk.client import LangGraphClient

    transport = httpx.AsyncHTTPTransport(retries=5, limits=httpx.Limits(keepalive_expiry=2.0))
    return LangGraphClient(httpx.AsyncClient(
        base_url=url, transport=transport,
        timeout=httpx.Timeout(connect=5, read=300, write=300, pool=5),
    ))


class Driver:
    """langgraph_sdk clients for one or more API processes, used round-robin."""

    def __init__(self, urls: list[str], graph_id: str = "graph3") -> None:
        self.clients = [sdk_client(u) for u in urls]
        self.graph_id = graph_id

    async def aclose(self) -> None:
        for c in self.clients:
            await c.aclose()

    async def threads(self, n: int, concurrency: int) -> list[str]:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> str:
            async with sem:
                t = await self.clients[i % len(self.clients)].threads.create()
                return str(t["thread_id"])

        return await asyncio.gather(*(one(i) for i in range(n)))

    async def wait(self, i: int, thread_id: str, tag: str) -> Any:
        client = self.clients[i % len(self.clients)]
        return await asyncio.wait_for(
            client.runs.wait(thread_id, self.graph_id, input=dict(RUN_INPUT),
                             metadata={"bench": tag}),
            OP_TIMEOUT_S,
        )


async def sequential(driver: Driver, n: int, budget_s: float, tag: str,
                     min_samples: int = 10) -> list[float]:
    threads = await driver.threads(n, 8)
    samples: list[float] = []
    end = time.perf_counter() + budget_s
    for i, thread_id in enumerate(threads):
        started = time.perf_counter()
        check(await driver.wait(i, thread_id, tag))
        samples.append(time.perf_counter() - started)
        if len(samples) >= min_samples and time.perf_counter() > end:
            break
    return samples


async def loaded(driver: Driver, n: int, concurrency: int, tag: str,
                 around: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
    """``n`` runs, ``concurrency`` in flight, each on a pre-created thread."""
    threads = await driver.threads(n, concurrency)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int, thread_id: str) -> None:
        async with sem:
            check(await driver.wait(i, thread_id, tag))

    if around is not None:
        await around()
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(i, t) for i, t in enumerate(threads)),
                                    return_exceptions=True)
    elapsed = time.perf_counter() - started
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if len(errors) == len(outcomes):
        raise RuntimeError(f"every run failed, e.g. {errors[0]!r}")
    out: dict[str, Any] = {"rps": (len(outcomes) - len(errors)) / elapsed, "elapsed_s": elapsed,
                           "runs": len(outcomes) - len(errors), "errors": len(errors)}
    if errors:
        out["first_error"] = repr(errors[0])
    return out


def queue_latency(url: str, tag: str) -> dict[str, float]:
    """enqueue → start of the runs tagged ``tag``, from the runs table."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT created_at, started_at FROM runs WHERE metadata ->> 'bench' = %s"
            " AND started_at IS NOT NULL", (tag,)
        ).fetchall()
    return summarize_ms([
        (datetime.fromisoformat(s) - datetime.fromisoformat(c)).total_seconds() for c, s in rows
    ])


class Probe:
    """Write transactions (the cluster's xid counter) and CPU time by kind of process, over
    the throughput phase. ``groups`` maps a label to a function giving that group's pids."""

    def __init__(self, url: str, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.url = url
        self.groups = {**groups, "postgres": lambda: pids_named("postgres"),
                       "redis": lambda: pids_named("redis-server")}
        self.marks: dict[str, float] = {}

    def _cpu(self) -> dict[str, float]:
        return {k: cpu_seconds(pids()) for k, pids in self.groups.items()}

    async def start(self) -> None:
        self.xid = xid_now(self.url)
        self.marks = self._cpu()
        self.client = time.process_time()

    def per_run(self, load: dict[str, Any]) -> dict[str, Any]:
        xids = xid_now(self.url) - self.xid - 1  # less the xid of the first xid_now
        after = self._cpu()
        runs = load["runs"]
        cpu = {k: (after[k] - self.marks[k]) * 1000 / runs for k in self.groups}
        cpu["client"] = (time.process_time() - self.client) * 1000 / runs
        return {"write_xacts_per_run": xids / runs, "write_xacts_per_s": xids / load["elapsed_s"],
                "cpu_ms_per_run": cpu}


# --- sections ----------------------------------------------------------------------------------


async def bench_scaling(dbs: Databases, n_workers: int, args: argparse.Namespace) -> dict[str, Any]:
    slots = max(1, math.ceil(args.concurrency / n_workers))
    with dbs.fresh(f"w{n_workers}") as url:
        await migrate(url)
        cluster = Cluster(f"w{n_workers}", url, apis=args.apis, workers=n_workers,
                          worker_concurrency=slots)
        try:
            await cluster.start()
            driver = Driver(cluster.urls)
            try:
                # Warm-up: imports, pools, plans.
                await sequential(driver, 10, 0, "warmup", min_samples=10)
                await loaded(driver, 2 * args.concurrency, args.concurrency, "warmup")
                seq = await sequential(driver, args.seq_n, args.seq_budget, "seq")

                probe = Probe(url, {"api": cluster.api_pids, "workers": cluster.worker_pids})
                load = await loaded(driver, args.n, args.concurrency, "load", around=probe.start)
                costs = probe.per_run(load)
            finally:
                await driver.aclose()
        finally:
            cluster.stop()
        return {
            "ok": True, "apis": args.apis, "workers": n_workers, "worker_concurrency": slots,
            "throughput": load, "rps": load["rps"],
            "wait_ms": summarize_ms(seq),
            "queue_idle_ms": queue_latency(url, "seq"),
            "queue_load_ms": queue_latency(url, "load"),
            **costs,
        }


async def bench_crash(dbs: Databases, lease: float | None, repeats: int) -> dict[str, Any]:
    label = "default" if lease is None else f"{lease:g}"
    extra = {} if lease is None else {"DOCKYARD_LEASE_SECONDS": f"{lease:g}"}
    samples: list[dict[str, Any]] = []
    with dbs.fresh(f"crash{label}") as url:
        await migrate(url)
        cluster = Cluster(f"crash-lease{label}", url, apis=1, workers=2, worker_concurrency=4,
                          extra_env=extra)
        try:
            await cluster.start()
            driver = Driver(cluster.urls, graph_id="slow_chain")
            client = driver.clients[0]
            conn = psycopg.connect(url, autocommit=True)
            try:
                for _ in range(repeats):
                    samples.append(await _one_crash(cluster, client, conn))
                    await cluster.add_worker()  # two live workers again for the next round
            finally:
                conn.close()
                await driver.aclose()
        finally:
            cluster.stop()
    reclaim = [s["reclaimed_s"] for s in samples]
    finish = [s["finished_s"] for s in samples]
    if lease is None:
        from dockyard.config import Settings

        default = Settings.from_env(environ={}).lease_seconds
    return {"ok": True, "lease_seconds": lease if lease is not None else f"default ({default:g})",
            "samples": samples, "reclaimed_s": statistics.median(reclaim),
            "finished_s": statistics.median(finish), "finished_max_s": max(finish)}


async def _one_crash(cluster: Cluster, client: Any, conn: psycopg.Connection[Any]) -> dict[str, Any]:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    run = await client.runs.create(tid, "slow_chain", input={"steps": [], "pause": 0.5})
    run_id = run["run_id"]
    deadline = time.monotonic() + 30
    while True:  # s1 and s2 checkpointed (steps -1 … 2): s3 is running
        row = conn.execute(
            "SELECT max((metadata ->> 'step')::int) FROM checkpoints"
            " WHERE thread_id = %s AND checkpoint_ns = ''", (tid,)
        ).fetchone()
        if row and row[0] is not None and row[0] >= 2:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the run did not reach step 2")
        await asyncio.sleep(0.01)
    owner_row = conn.execute("SELECT worker_id FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    owner_id = owner_row[0] if owner_row else None
    victims = [w for w in cluster.workers if w.proc is not None and worker_id_of(w) == owner_id]
    if not victims:
        raise RuntimeError(f"no live worker has id {owner_id!r}")
    victim = victims[0]
    assert victim.proc is not None
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    victim.proc.wait()
    victim.stop()  # bookkeeping only: the process is gone
    cluster.workers.remove(victim)
    reclaimed: float | None = None
    while True:
        status, attempts = conn.execute(
            "SELECT status, attempts FROM runs WHERE run_id = %s", (run_id,)
        ).fetchone() or (None, None)
        now = time.monotonic()
        if reclaimed is None and attempts and attempts >= 2:
            reclaimed = now - killed
        if status in ("success", "error", "interrupted"):
            finished = now - killed
            break
        if now - killed > 180:
            raise RuntimeError(f"run not finished 180 s after the kill (status {status})")
        await asyncio.sleep(0.02)
    final = await client.runs.join(tid, run_id)
    if status != "success" or (final or {}).get("steps") != CHAIN or attempts != 2:
        raise RuntimeError(f"unexpected outcome: {status}, attempts {attempts}, {final!r}")
    return {"reclaimed_s": reclaimed if reclaimed is not None else finished,
            "finished_s": finished, "killed_worker": owner_id}


def load_graphs_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_topology_graphs", PROJECT / "graphs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def state_bytes(messages: list[Any]) -> dict[str, int]:
    contents = sum(len(m["content"] if isinstance(m, dict) else m.content) for m in messages)
    as_json = len(json.dumps([m if isinstance(m, dict) else m.model_dump() for m in messages],
                             default=str))
    return {"content": contents, "json": as_json}


def _sizes_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {t: after[t] - before[t] for t in CHECKPOINT_TABLES}


async def bench_checkpoint(dbs: Databases, steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": True, "steps": steps}
    # Through Dockyard: runs.wait on an API process, executed by a worker process; the list
    # in a plain add_messages channel, then in LangGraph's DeltaChannel.
    for graph_id, key in (("growing", "dockyard"), ("growing_delta", "dockyard_delta")):
        out[key] = await _checkpoint_run(dbs, steps, graph_id)
    out.update(await _checkpoint_saver(dbs, steps))
    return out


async def _checkpoint_run(dbs: Databases, steps: int, graph_id: str) -> dict[str, Any]:
    with dbs.fresh("ckpt") as url:
        await migrate(url)
        cluster = Cluster("ckpt", url, apis=1, workers=1, worker_concurrency=4)
        try:
            await cluster.start()
            driver = Driver(cluster.urls, graph_id=graph_id)
            try:
                client = driver.clients[0]
                # A short run first, so imports and pools are warm; its bytes are subtracted.
                t0 = (await client.threads.create())["thread_id"]
                await client.runs.wait(t0, graph_id, input={"target": 2})
                before = checkpoint_bytes(url)
                tid = (await client.threads.create())["thread_id"]
                started = time.perf_counter()
                final = await asyncio.wait_for(client.runs.wait(
                    tid, graph_id, input={"target": steps}, durability="sync",
                    config={"recursion_limit": steps + 10}), 600)
                wall = time.perf_counter() - started
                after = checkpoint_bytes(url)
                with psycopg.connect(url, autocommit=True) as conn:
                    row = conn.execute(
                        "SELECT started_at, ended_at FROM runs WHERE thread_id = %s", (tid,)
                    ).fetchone()
                assert row is not None
                run_s = (datetime.fromisoformat(row[1]) - datetime.fromisoformat(row[0])).total_seconds()
            finally:
                await driver.aclose()
        finally:
            cluster.stop()
    messages = (final or {}).get("messages", []) if isinstance(final, dict) else []
    if len(messages) != steps:
        raise RuntimeError(f"expected {steps} messages, got {len(messages)}")
    unique = state_bytes(messages)
    disk = _sizes_delta(before, after)
    return {"ms_per_step": run_s * 1000 / steps, "wall_ms_per_step": wall * 1000 / steps,
            "bytes": disk, "total_bytes": sum(disk.values()), "unique_bytes": unique,
            "ratio": sum(disk.values()) / unique["json"]}


async def _checkpoint_saver(dbs: Databases, steps: int) -> dict[str, Any]:
    """The same graph in this process, on langgraph's saver and on Dockyard's (its storage's
    checkpointer): what a durable step costs without the server's streams and traces."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    from dockyard.storage import create_storage

    out: dict[str, Any] = {}
    module = load_graphs_module()
    for key in ("langgraph_saver", "dockyard_saver"):
        with dbs.fresh("saver") as url:
            async with contextlib.AsyncExitStack() as stack:
                if key == "langgraph_saver":
                    saver: Any = await stack.enter_async_context(
                        AsyncPostgresSaver.from_conn_string(url))
                    await saver.setup()
                else:
                    storage = create_storage(url, default_path=Path("unused"))
                    await storage.open()
                    stack.push_async_callback(storage.close)
                    await storage.migrate()
                    saver = storage.checkpointer
                graph = module.growing_builder.compile(checkpointer=saver)
                await graph.ainvoke({"target": 2}, {"configurable": {"thread_id": "warm"}},
                                    durability="sync")
                before = checkpoint_bytes(url)
                started = time.perf_counter()
                result = await graph.ainvoke(
                    {"target": steps},
                    {"configurable": {"thread_id": "t"}, "recursion_limit": steps + 10},
                    durability="sync",
                )
                elapsed = time.perf_counter() - started
                read_ms = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    await saver.aget_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
                    read_ms.append((time.perf_counter() - t0) * 1000)
                after = checkpoint_bytes(url)
        unique = state_bytes(result["messages"])
        disk = _sizes_delta(before, after)
        out[key] = {"ms_per_step": elapsed * 1000 / steps, "bytes": disk,
                    "total_bytes": sum(disk.values()), "unique_bytes": unique,
                    "ratio": sum(disk.values()) / unique["json"],
                    "read_ms": statistics.median(read_ms)}
    return out


def bench_pgbench(dbs: Databases, seconds: int) -> dict[str, Any]:
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        return {"ok": False, "error": "pgbench not found (apt-get install postgresql-client)"}
    with dbs.fresh("pgbench") as url:
        parts = urlsplit(url)
        conn_args = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
                     "-U", parts.username or "postgres"]
        db = parts.path.lstrip("/")
        env = {**os.environ}
        if parts.password:
            env["PGPASSWORD"] = parts.password
        subprocess.run([pgbench, "-i", "-q", *conn_args, db], check=True, env=env,
                       capture_output=True)
        cmd = [pgbench, *conn_args, "-c", "8", "-j", "2", "-T", str(seconds),
               "-b", "simple-update", db]
        done = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    if found is None:
        return {"ok": False, "error": f"no tps in pgbench output:\n{done.stdout}"}
    return {"ok": True, "tps": float(found.group(1)), "command": " ".join(cmd[:1] + cmd[-7:])}


# --- peers -------------------------------------------------------------------------------------


def find_python312() -> str | None:
    candidates = [shutil.which("python3.12"), "/usr/bin/python3.12", "/usr/local/bin/python3.12",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for c in candidates:
        if not c:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([c, "--version"], capture_output=True, text=True, timeout=10)
            if done.returncode == 0 and done.stdout.startswith("Python 3.12"):
                return c
    return None


def ensure_peer_venv(python: str, name: str) -> Path:
    venv = BENCH_DIR / f".peer-{name}"
    stamp = venv / ".installed"
    if stamp.exists():
        return venv
    log(f"[{name}] creating {venv} (pip install {' '.join(PEER_PACKAGES[name])}) …")
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=False)
    subprocess.run([*pip, *PEER_PACKAGES[name]], check=True)
    stamp.touch()
    return venv


def venv_versions(venv: Path, dists: list[str]) -> dict[str, str]:
    code = ("import json, sys; from importlib.metadata import version\n"
            "print(json.dumps({d: version(d) for d in sys.argv[1:]}))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code, *dists],
                          capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


async def bench_peer(name: str, python: str, dbs: Databases, args: argparse.Namespace) -> dict[str, Any]:
    venv = await asyncio.to_thread(ensure_peer_venv, python, name)
    port = free_port()
    with dbs.fresh(name.replace("-", "")) as url, tempfile.TemporaryDirectory() as tmp:
        if name == "runtime-pg":
            env = clean_env(DATABASE_URI=url, REDIS_URI=REDIS_URL, LANGGRAPH_RUNTIME_EDITION="pg",
                            LANGSERVE_GRAPHS=json.dumps({"graph3": f"{GRAPH3_FILE}:graph"}))
            subprocess.run([str(venv / "bin" / "langgraph-runtime-pg-migrate"), "upgrade"],
                           env=env, check=True, capture_output=True)
            argv = [str(venv / "bin" / "uvicorn"), "langgraph_api.server:app", "--port", str(port),
                    "--no-access-log"]
            server = ServerProcess(name, argv, port, cwd=Path(tmp), env=env,
                                   log_path=RESULTS_DIR / f"topology-peer-{name}.log")
            versions = venv_versions(venv, ["langgraph-api", "langgraph-runtime-pg", "langgraph"])
        else:
            shutil.copy(GRAPH3_FILE, Path(tmp) / "graph.py")
            (Path(tmp) / "aegra.json").write_text(json.dumps({"graphs": {"graph3": "./graph.py:graph"}}))
            env = clean_env(DATABASE_URL=url, REDIS_BROKER_ENABLED="true", REDIS_URL=REDIS_URL,
                            ENV_MODE="PRODUCTION", LOG_LEVEL="WARNING")
            argv = [str(venv / "bin" / "uvicorn"), "aegra_api.main:app", "--port", str(port),
                    "--no-access-log"]
            server = ServerProcess(name, argv, port, cwd=Path(tmp), env=env,
                                   log_path=RESULTS_DIR / f"topology-peer-{name}.log",
                                   health_path="/health")
            versions = venv_versions(venv, ["aegra-api", "langgraph"])
        try:
            await asyncio.to_thread(server.start, 120.0)
            driver = Driver([server.url])
            try:
                await sequential(driver, 3, 0, "warmup", min_samples=3)
                seq = await sequential(driver, args.seq_n, args.seq_budget, "seq")
                probe = Probe(url, {"api": lambda: [server.pid]})
                load = await loaded(driver, args.peer_n or args.n, args.concurrency, "load",
                                    around=probe.start)
                costs = probe.per_run(load)
            finally:
                await driver.aclose()
        finally:
            server.stop()
    return {"ok": True, "versions": versions, "rps": load["rps"], "throughput": load,
            "wait_ms": summarize_ms(seq), "command": argv[:2], **costs}


# --- reporting ---------------------------------------------------------------------------------


def _fmt(v: float | None, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def _get(r: dict[str, Any], *keys: str) -> float | None:
    cur: Any = r
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return float(cur) if isinstance(cur, int | float) else None


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The results of one configuration's rounds as one: each number is the median of the
    rounds that succeeded (the first failure if none did)."""
    ok = [r for r in results if r.get("ok")]
    if not ok:
        return results[0]

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, bool) or not isinstance(first, int | float | dict):
            return first
        if isinstance(first, dict):
            keys = [k for k in first if all(isinstance(v, dict) and k in v for v in values)]
            return {k: merge([v[k] for v in values]) for k in keys}
        numbers = [v for v in values if isinstance(v, int | float)]
        return first if all(v == first for v in numbers) else statistics.median(numbers)

    merged = merge(ok)
    merged["rounds_ok"] = len(ok)
    return dict(merged)


def render_rounds(report: dict[str, Any]) -> list[str]:
    """Per round: the best Dockyard configuration and the peer, side by side."""
    rounds = report.get("rounds") or []
    if len(rounds) < 2:
        return []
    out = ["", "| round | best Dockyard config | its runs/s | runtime-pg runs/s | ratio "
           "| dockyard 1w p50 (ms) | runtime-pg p50 (ms) |", "|---|---|---|---|---|---|---|"]
    ratios = []
    for i, r in enumerate(rounds, 1):
        ours = {k: v for k, v in r.items() if k != "runtime-pg" and v.get("ok")}
        peer = r.get("runtime-pg") or {}
        if not ours:
            continue
        best = max(ours, key=lambda k: ours[k]["rps"])
        ratio = ours[best]["rps"] / peer["rps"] if peer.get("ok") else None
        if ratio is not None:
            ratios.append(ratio)
        one = ours.get("1w", {})
        out.append(f"| {i} | {best} | {ours[best]['rps']:.1f} | "
                   f"{_fmt(_get(peer, 'rps') if peer.get('ok') else None, '{:.1f}')} | "
                   f"{_fmt(ratio, '{:.2f}x')} | {_fmt(_get(one, 'wait_ms', 'p50'), '{:.1f}')} | "
                   f"{_fmt(_get(peer, 'wait_ms', 'p50') if peer.get('ok') else None, '{:.1f}')} |")
    if ratios:
        out.append(f"| median of the rounds' ratios | | | | {statistics.median(ratios):.2f}x | | |")
    return out


def render(report: dict[str, Any]) -> str:
    out: list[str] = []
    cols: list[tuple[str, dict[str, Any]]] = []
    for key, r in report["scaling"].items():
        cols.append((f"dockyard {key}", r))
    for key, r in report["peers"].items():
        cols.append((key, r))
    rows = [
        ("throughput @{c} (runs/s)", ("rps",), "{:.1f}"),
        ("runs.wait p50, sequential (ms)", ("wait_ms", "p50"), "{:.1f}"),
        ("runs.wait p99, sequential (ms)", ("wait_ms", "p99"), "{:.1f}"),
        ("queue latency p50, idle (ms)", ("queue_idle_ms", "p50"), "{:.1f}"),
        ("queue latency p99, idle (ms)", ("queue_idle_ms", "p99"), "{:.1f}"),
        ("queue latency p50, @{c} (ms)", ("queue_load_ms", "p50"), "{:.1f}"),
        ("queue latency p99, @{c} (ms)", ("queue_load_ms", "p99"), "{:.1f}"),
        ("write transactions per run", ("write_xacts_per_run",), "{:.1f}"),
        ("CPU per run: API processes (peers: the one server process) (ms)",
         ("cpu_ms_per_run", "api"), "{:.1f}"),
        ("CPU per run: worker processes (ms)", ("cpu_ms_per_run", "workers"), "{:.1f}"),
        ("CPU per run: PostgreSQL (ms)", ("cpu_ms_per_run", "postgres"), "{:.1f}"),
        ("CPU per run: Redis (ms)", ("cpu_ms_per_run", "redis"), "{:.1f}"),
        ("CPU per run: client (ms)", ("cpu_ms_per_run", "client"), "{:.1f}"),
    ]
    c = report["settings"]["concurrency"]
    out.append("| metric | " + " | ".join(name for name, _ in cols) + " |")
    out.append("|---|" + "---|" * len(cols))
    for label, keys, fmt in rows:
        cells = [_fmt(_get(r, *keys) if r.get("ok") else None, fmt) for _, r in cols]
        out.append(f"| {label.format(c=c)} | " + " | ".join(cells) + " |")
    rounds = len(report.get("rounds") or [])
    if rounds > 1:
        out.append(f"\nDockyard's and runtime-pg's figures: medians of {rounds} alternating "
                   "rounds (Aegra: one).")
    out += render_rounds(report)

    crash = report.get("crash", {})
    if crash:
        out += ["", "| crash: SIGKILL the worker mid-run | kill → re-claimed (s) | kill → finished (s) "
                "| samples |", "|---|---|---|---|"]
        for key, r in crash.items():
            if r.get("ok"):
                out.append(f"| DOCKYARD_LEASE_SECONDS={key} | {r['reclaimed_s']:.1f} | "
                           f"{r['finished_s']:.1f} (max {r['finished_max_s']:.1f}) | "
                           f"{len(r['samples'])} |")
            else:
                out.append(f"| DOCKYARD_LEASE_SECONDS={key} | failed: {r.get('error')} | | |")

    ck = report.get("checkpoint", {})
    if ck.get("ok"):
        out += ["", f"| checkpoints: {ck['steps']}-step run, +2 KB message a step, durability=sync "
                "| ms/step | checkpoint tables (MB) | unique state (KB) | disk / state "
                "| read latest (ms) |", "|---|---|---|---|---|---|"]
        for key, label in (("dockyard", "Dockyard run path (API + worker, PostgreSQL)"),
                           ("dockyard_delta", "Dockyard run path, the list in a DeltaChannel"),
                           ("langgraph_saver", "langgraph AsyncPostgresSaver, in-process"),
                           ("dockyard_saver", "Dockyard's PostgreSQL checkpointer, in-process")):
            r = ck[key]
            read = f"{r['read_ms']:.1f}" if "read_ms" in r else ""
            out.append(f"| {label} | {r['ms_per_step']:.2f} | {r['total_bytes'] / 1e6:.2f} | "
                       f"{r['unique_bytes']['json'] / 1e3:.0f} | {r['ratio']:.1f}x | {read} |")
    elif ck:
        out += ["", f"checkpoint section failed: {ck.get('error')}"]

    pg = report.get("pgbench", {})
    if pg.get("ok"):
        best = max((r for r in report["scaling"].values() if r.get("ok")),
                   key=lambda r: r["rps"], default=None)
        out += ["", "| PostgreSQL ceiling | value |", "|---|---|",
                f"| pgbench simple-update, -c 8 -j 2 (tps) | {pg['tps']:.0f} |"]
        if best is not None:
            out.append(f"| best Dockyard config: runs/s ÷ pgbench tps | "
                       f"{best['rps'] / pg['tps']:.1%} |")
            out.append(f"| best Dockyard config: write transactions/s ÷ pgbench tps | "
                       f"{best['write_xacts_per_s'] / pg['tps']:.1%} "
                       f"({best['write_xacts_per_s']:.0f}/s) |")
    elif pg:
        out += ["", f"pgbench: {pg.get('error')}"]
    if report.get("peers_note"):
        out += ["", report["peers_note"]]
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default="1,2,4", help="worker process counts (default 1,2,4)")
    p.add_argument("--apis", type=int, default=1, help="API processes (default 1)")
    p.add_argument("--n", type=int, default=500, help="runs in the throughput phase")
    p.add_argument("--concurrency", type=int, default=32, help="runs in flight")
    p.add_argument("--seq-n", type=int, default=100, help="sequential runs.wait samples (max)")
    p.add_argument("--seq-budget", type=float, default=20.0,
                   help="seconds of sequential runs (at least 10 samples)")
    p.add_argument("--crash-repeats", type=int, default=2, help="kills per lease setting")
    p.add_argument("--crash-leases", default="default,5",
                   help="DOCKYARD_LEASE_SECONDS values ('default': unset)")
    p.add_argument("--checkpoint-steps", type=int, default=300)
    p.add_argument("--pgbench-seconds", type=int, default=15)
    p.add_argument("--peer-n", type=int, default=None, help="throughput runs for peers (default --n)")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the scaling section and the runtime-pg peer, alternating, and "
                        "report medians and the ratio of each round (default 1)")
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--skip-crash", action="store_true")
    p.add_argument("--skip-checkpoint", action="store_true")
    p.add_argument("--skip-pgbench", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "topology.json")
    args = p.parse_args(argv)
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    return args


async def guarded(name: str, coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    log(f"[{name}] running …")
    started = time.perf_counter()
    try:
        result = await coro
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log(f"[{name}] FAILED: {error}")
        if not isinstance(exc, ServerError):
            traceback.print_exc()
        return {"ok": False, "error": error}
    log(f"[{name}] done in {time.perf_counter() - started:.1f}s")
    return result


async def main_async(args: argparse.Namespace) -> int:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    dbs = Databases(ADMIN_URL)
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "scaling": {}, "crash": {}, "peers": {}, "rounds": [],
    }
    python = None
    if args.skip_peers:
        report["peers_note"] = "Peers skipped (--skip-peers)."
    else:
        python = find_python312()
        if python is None:
            report["peers_note"] = ("Peers skipped: no python3.12 on this machine "
                                    "(langgraph-runtime-pg and Aegra need Python 3.12).")
            log(report["peers_note"])
        else:
            report["python312"] = python
    try:
        # Dockyard and the best peer take turns, so that a slow patch of a shared machine
        # weighs on both; each figure is the median of the rounds, and the ratio is also
        # given per round.
        for i in range(args.rounds):
            tag = f", round {i + 1}/{args.rounds}" if args.rounds > 1 else ""
            this: dict[str, dict[str, Any]] = {}
            for n in args.worker_counts:
                this[f"{n}w"] = await guarded(f"scaling {n} worker(s){tag}",
                                              bench_scaling(dbs, n, args))
            if python is not None:
                this["runtime-pg"] = await guarded(f"peer runtime-pg{tag}",
                                                   bench_peer("runtime-pg", python, dbs, args))
            report["rounds"].append(this)
        for n in args.worker_counts:
            report["scaling"][f"{n}w"] = median_result(
                [r[f"{n}w"] for r in report["rounds"]])
        if python is not None:
            report["peers"]["runtime-pg"] = median_result(
                [r["runtime-pg"] for r in report["rounds"]])
        if not args.skip_crash:
            for lease in [x.strip() for x in args.crash_leases.split(",") if x.strip()]:
                value = None if lease == "default" else float(lease)
                report["crash"][lease] = await guarded(f"crash lease={lease}",
                                                       bench_crash(dbs, value, args.crash_repeats))
        if not args.skip_checkpoint:
            report["checkpoint"] = await guarded("checkpoint",
                                                 bench_checkpoint(dbs, args.checkpoint_steps))
        if not args.skip_pgbench:
            log("[pgbench] running …")
            report["pgbench"] = await asyncio.to_thread(bench_pgbench, dbs, args.pgbench_seconds)
        if python is not None:
            # Aegra polls every 2 s: one round tells all there is to tell.
            report["peers"]["aegra"] = await guarded("peer aegra",
                                                     bench_peer("aegra", python, dbs, args))
    finally:
        dbs.drop_all()

    table = render(report)
    report["table_markdown"] = table
    print()
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if any(r.get("ok") for r in report["scaling"].values()) else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
