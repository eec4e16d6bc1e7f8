"""Per-run cost of the 3-node ``runs.wait`` path on PostgreSQL + Redis, A/B side by side.

    .venv/bin/python bench/runpath_bench.py --variant base=/tmp/perf-base/src --variant new=src
    .venv/bin/python bench/runpath_bench.py --variant new=src --mode dev

    .venv/bin/python bench/runpath_bench.py --variant new=src --timeline

Each variant is a source tree (put first on PYTHONPATH) served by its own `dockyard serve` +
`dockyard worker` (``--mode split``) or `dockyard dev` (``--mode dev``) on its own scratch
database and its own private `redis-server`. Rounds alternate between the variants; in each
round: ``--seq`` sequential `runs.wait` (latency), then ``--n`` runs with ``--concurrency`` in
flight (throughput). Counted per run, which does not depend on the machine's load: SQL
statements issued by each process (psycopg, through ``runpath_probe/sitecustomize.py``),
committed transactions of the database (``pg_stat_database.xact_commit``), Redis commands
(``INFO commandstats`` of the private server) and CPU time (``/proc/<pid>/stat``).

``--timeline``: ``--seq`` sequential runs with the probe's trace on; prints each event (HTTP
arrival and response, statements, Redis commands, by process; by its label and occurrence, if at
least half the runs had it) at its median time from the client's request: where a run's
latency goes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_BIN = Path(sys.executable).parent
PROJECT = BENCH / "topology"
ADMIN_URL = os.environ.get("DOCKYARD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = {"assistant_id": "graph3", "input": {"count": 0}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    return 0.0


def group_pids(pgid: int) -> list[int]:
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(d, "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                out.append(int(d[6:]))
    return out


class Variant:
    def __init__(self, name: str, src: str, mode: str, tmp: Path, probe: bool = True,
                 trace: bool = False) -> None:
        self.name, self.src, self.mode, self.tmp = name, str(Path(src).resolve()), mode, tmp
        self.with_probe = probe
        self.db = f"dockyard_bench_rp_{name}_{uuid.uuid4().hex[:6]}"
        self.db_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + self.db
        self.redis_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.probe = str(tmp / f"probe-{name}")
        self.trace = str(tmp / f"trace-{name}") if trace else ""
        self.funcs = ""  # DOCKYARD_PROBE_FUNCS of the trace
        self.port = free_port()

    def start(self) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.db}"'.encode())
        self.procs["redis"] = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        path = f"{BENCH / 'runpath_probe'}:{self.src}" if self.with_probe else self.src
        env.update(PYTHONPATH=path, DOCKYARD_PROBE_OUT=self.probe,
                   DOCKYARD_DATABASE_URL=self.db_url,
                   DOCKYARD_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
                   DOCKYARD_LOG_LEVEL="warning")
        if self.trace:
            env["DOCKYARD_PROBE_TRACE"] = self.trace
            env["DOCKYARD_PROBE_FUNCS"] = self.funcs
        dy = str(VENV_BIN / "dockyard")
        if self.mode == "split":
            subprocess.run([dy, "migrate"], env=env, check=True, cwd=PROJECT,
                           stdout=subprocess.DEVNULL)
            cmds = {"api": [dy, "serve", str(PROJECT), "--port", str(self.port), "--insecure"],
                    "worker": [dy, "worker", str(PROJECT), "--concurrency", "32",
                               "--metrics-port", str(free_port()), "--insecure"]}
        else:
            cmds = {"dev": [dy, "dev", str(PROJECT), "--port", str(self.port), "--no-reload"]}
        for role, argv in cmds.items():
            log = (self.tmp / f"{self.name}-{role}.log").open("wb")
            self.procs[role] = subprocess.Popen(argv, env=env, cwd=PROJECT, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/ok", timeout=1).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start; see {self.tmp}")

    def stop(self) -> None:
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, 15)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        with psycopg.connect(ADMIN_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'.encode())

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {"cpu": {}, "sql": {}}
        time.sleep(0.6)  # the probe files are rewritten every 0.25 s
        for role, p in self.procs.items():
            if role == "redis":
                continue
            pids = group_pids(p.pid)
            snap["cpu"][role] = sum(cpu_s(pid) for pid in pids)
            c: collections.Counter[str] = collections.Counter()
            for pid in pids:
                with contextlib.suppress(OSError, ValueError):
                    c.update(json.loads(Path(f"{self.probe}.{pid}").read_text()))
            snap["sql"][role] = c
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                               (self.db,)).fetchone()
            snap["xact"] = int(row[0]) if row else 0
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), "info", "commandstats"],
                             capture_output=True, text=True).stdout
        cmds: collections.Counter[str] = collections.Counter()
        for line in out.splitlines():
            if line.startswith("cmdstat_"):
                name, rest = line[8:].split(":", 1)
                cmds[name] = int(rest.split(",")[0].split("=")[1])
        snap["redis"] = cmds
        return snap


async def one_run(client: httpx.AsyncClient, thread_id: str) -> float:
    t0 = time.perf_counter()
    r = await client.post(f"/threads/{thread_id}/runs/wait", json=BODY)
    r.raise_for_status()
    assert r.json().get("count") == 3, r.text
    return time.perf_counter() - t0


async def threads(client: httpx.AsyncClient, n: int) -> list[str]:
    out = []
    for _ in range(n):
        r = await client.post("/threads", json={})
        r.raise_for_status()
        out.append(r.json()["thread_id"])
    return out


async def measure(v: Variant, seq: int, n: int, concurrency: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{v.port}", timeout=120) as client:
        seq_threads = await threads(client, seq)
        par_threads = await threads(client, n)
        before = v.snapshot()
        lat = [await one_run(client, t) for t in seq_threads]
        mid = v.snapshot()
        sem = asyncio.Semaphore(concurrency)

        async def go(t: str) -> None:
            async with sem:
                await one_run(client, t)

        t0 = time.perf_counter()
        await asyncio.gather(*(go(t) for t in par_threads))
        elapsed = time.perf_counter() - t0
        after = v.snapshot()
    return {"lat": lat, "rps": n / elapsed, "seq": (before, mid, seq), "par": (mid, after, n)}


async def timeline(v: Variant, seq: int) -> None:
    """Print where a sequential run's latency goes (see the module's docstring)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{v.port}", timeout=120) as client:
        for t in await threads(client, 20):  # warm-up
            await one_run(client, t)
        spans = []
        for t in await threads(client, seq):
            await asyncio.sleep(0.02)  # idle between runs: no event of one falls in another
            t0 = time.time_ns()
            await one_run(client, t)
            spans.append((t0, time.time_ns()))
    await asyncio.sleep(0.6)  # the probe writes its trace every 0.25 s
    roles = {pid: role for role, p in v.procs.items() if role != "redis"
             for pid in group_pids(p.pid)}
    events: list[tuple[int, str]] = []
    for path in glob.glob(f"{v.trace}.*"):
        role = roles.get(int(path.rsplit(".", 1)[1]), "?")
        for line in Path(path).read_text().splitlines():
            ns, label = json.loads(line)
            events.append((ns, f"{role:6} {label}"))
    events.sort()
    per: list[list[tuple[float, str]]] = []
    for t0, t1 in spans:
        per.append([((ns - t0) / 1e6, label) for ns, label in events if t0 <= ns <= t1])
    # Each event is known by its label and its occurrence in the run (the 2nd "worker sql>"),
    # since processes interleave differently from run to run; shown if half the runs had it.
    at: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    for run in per:
        seen: collections.Counter[str] = collections.Counter()
        for ms, label in run:
            at[(label, seen[label])].append(ms)
            seen[label] += 1
    rows = sorted((statistics.median(v), label) for (label, _), v in at.items()
                  if len(v) * 2 >= len(per))
    total = statistics.median((t1 - t0) / 1e6 for t0, t1 in spans)
    print(f"## {v.name}: timeline of {len(per)} sequential runs (median total {total:.2f} ms);"
          " median ms from the client's request, and since the previous event")
    prev = 0.0
    for ms, label in rows:
        print(f"  {ms:7.2f}  +{ms - prev:5.2f}  {label}")
        prev = ms
    print(f"  {total:7.2f}  +{total - prev:5.2f}  client has the answer")


def per_run(d: tuple[dict[str, Any], dict[str, Any], int]) -> dict[str, Any]:
    a, b, n = d
    out: dict[str, Any] = {"xact": (b["xact"] - a["xact"]) / n}
    for role in b["cpu"]:
        out[f"cpu_ms.{role}"] = (b["cpu"][role] - a["cpu"][role]) * 1000 / n
        out[f"sql.{role}"] = (b["sql"][role]["sql"] - a["sql"][role]["sql"]) / n
    out["redis"] = (sum(b["redis"].values()) - sum(a["redis"].values())) / n
    return out


def breakdown(d: tuple[dict[str, Any], dict[str, Any], int]) -> dict[str, Any]:
    a, b, n = d
    res: dict[str, Any] = {}
    for role in b["sql"]:
        diff = {k: (b["sql"][role][k] - a["sql"][role].get(k, 0)) / n for k in b["sql"][role]}
        res[role] = {k: round(v, 2) for k, v in sorted(diff.items(), key=lambda kv: -kv[1]) if v}
    rd = {k: (b["redis"][k] - a["redis"].get(k, 0)) / n for k in b["redis"]}
    res["redis"] = {k: round(v, 2) for k, v in sorted(rd.items(), key=lambda kv: -kv[1]) if v}
    return res


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help="name=src_dir")
    ap.add_argument("--mode", choices=("split", "dev"), default="split")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seq", type=int, default=60)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--breakdown", action="store_true", help="print statements by SQL")
    ap.add_argument("--timeline", action="store_true",
                    help="trace --seq sequential runs: where the latency goes")
    ap.add_argument("--funcs", default="",
                    help="with --timeline: functions to mark too, module:Attr.path,…")
    ap.add_argument("--latency-only", action="store_true",
                    help="no SQL probe (it adds latency): sequential runs.wait only, --seq each round")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="runpath-"))
    variants = [Variant(*spec.split("=", 1), args.mode, tmp, probe=not args.latency_only,
                        trace=args.timeline) for spec in args.variant]
    try:
        if args.timeline:
            for v in variants:
                v.funcs = args.funcs
                v.start()
                await timeline(v, args.seq)
        elif args.latency_only:
            await latency_only(variants, args)
        else:
            await counts(variants, args)
    finally:
        for v in variants:
            with contextlib.suppress(Exception):
                v.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def latency_only(variants: list[Variant], args: argparse.Namespace) -> None:
    """Sequential ``runs.wait`` without the probe, rounds alternating between the variants."""
    for v in variants:
        v.start()
    lats: dict[str, list[float]] = {v.name: [] for v in variants}
    async with contextlib.AsyncExitStack() as stack:
        clients = {v.name: await stack.enter_async_context(httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{v.port}", timeout=120)) for v in variants}
        for r in range(args.rounds + 1):  # round 0 warms up
            for v in (variants if r % 2 == 0 else variants[::-1]):
                c = clients[v.name]
                got = [await one_run(c, t) for t in await threads(c, args.seq)]
                if r:
                    lats[v.name].extend(got)
    for name, lat in lats.items():
        lat.sort()
        print(f"## {name} ({args.mode}, no probe): runs.wait p50 "
              f"{statistics.median(lat) * 1000:.2f} ms, p90 "
              f"{lat[int(len(lat) * 0.9)] * 1000:.2f} ms ({len(lat)} runs)")


async def counts(variants: list[Variant], args: argparse.Namespace) -> None:
    """Per-run counts and CPU, sequential and at ``--concurrency``, rounds alternating."""
    results: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    for v in variants:
        v.start()
    for v in variants:  # warm-up
        await measure(v, 10, 40, args.concurrency)
    for r in range(args.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            results[v.name].append(await measure(v, args.seq, args.n, args.concurrency))
    for v in variants:
        rs = results[v.name]
        lat = sorted(x for m in rs for x in m["lat"])
        seqs = [per_run(m["seq"]) for m in rs]
        pars = [per_run(m["par"]) for m in rs]
        keys = list(seqs[0])
        print(f"## {v.name} ({args.mode})")
        print(f"  runs.wait p50 {statistics.median(lat) * 1000:.1f} ms,"
              f" p90 {lat[int(len(lat) * 0.9)] * 1000:.1f} ms;"
              f" throughput c={args.concurrency}: "
              + ", ".join(f"{m['rps']:.0f}" for m in rs) + " runs/s")
        for label, rows in (("sequential", seqs), ("concurrent", pars)):
            print(f"  per run, {label}: " + ", ".join(
                f"{k} {statistics.median(row[k] for row in rows):.2f}" for k in keys))
        if args.breakdown:
            print(json.dumps(breakdown(rs[-1]["seq"]), indent=1))


if __name__ == "__main__":
    asyncio.run(main())
