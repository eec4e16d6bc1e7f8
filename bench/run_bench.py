"""Dockyard against the in-process floor and the reference `langgraph dev` server, in one run.

    .venv/bin/python bench/run_bench.py [--targets inproc,dockyard,reference] [--n 200]
                                        [--concurrency 32]

Targets:
  inproc     bench/graph3 compiled with langgraph's AsyncSqliteSaver (a file in a temp dir),
             driven directly: the floor that no server can beat.
  dockyard   `dockyard dev bench/graph3 --port 2025 --no-reload` (servers.DOCKYARD_CMD), data in
             a temp dir, driven with langgraph_sdk.
  reference  `langgraph dev --port 2026 …` from bench/.refvenv (created on first use), driven
             with langgraph_sdk.

For each: latency p50/p99 of a stateful run on a fresh thread (sequential; thread creation is
not timed), throughput at --concurrency (each run on its own pre-created thread), time to the
first streamed `updates` event, an interrupt → resume round trip, and the server's RSS (with
its child processes). Prints a markdown table and writes bench/results/latest.json. A target
that fails is reported and skipped; the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

from servers import (
    GRAPH_DIR,
    RESULTS_DIR,
    ServerError,
    ServerProcess,
    dockyard_server,
    reference_server,
    rss_bytes,
)
from stats import percentile

T = TypeVar("T")
TARGETS = ("inproc", "dockyard", "reference")
GRAPH_ID = "graph3"
INTERRUPT_GRAPH_ID = "interrupt_graph"
RUN_INPUT: dict[str, Any] = {"count": 0}
EXPECTED_STEPS = ["a", "b", "c"]
RESUME_VALUE = "go"
OP_TIMEOUT_S = 60.0
MIN_SAMPLES = 20


class Driver(Protocol):
    """What one target must offer; each method does one timed operation's worth of work."""

    async def new_thread(self) -> str: ...
    async def run(self, thread_id: str) -> dict[str, Any]: ...
    async def first_update(self, thread_id: str) -> float: ...
    async def interrupt_roundtrip(self, thread_id: str) -> dict[str, Any]: ...
    def rss(self) -> int: ...


def load_graph_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_graph3", GRAPH_DIR / "graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: the module's postponed annotations are resolved through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class InprocDriver:
    """The graphs compiled in this process with AsyncSqliteSaver: no HTTP, no queue."""

    def __init__(self, graph: Any, interrupt_graph: Any) -> None:
        self.graph = graph
        self.interrupt_graph = interrupt_graph

    @staticmethod
    def _config(thread_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread_id}}

    async def new_thread(self) -> str:
        return str(uuid.uuid4())

    async def run(self, thread_id: str) -> dict[str, Any]:
        return await self.graph.ainvoke(dict(RUN_INPUT), self._config(thread_id))

    async def first_update(self, thread_id: str) -> float:
        started = time.perf_counter()
        first: float | None = None
        async for _ in self.graph.astream(
            dict(RUN_INPUT), self._config(thread_id), stream_mode="updates"
        ):
            if first is None:
                first = time.perf_counter() - started
        if first is None:
            raise RuntimeError("the stream produced no updates")
        return first

    async def interrupt_roundtrip(self, thread_id: str) -> dict[str, Any]:
        from langgraph.types import Command

        config = self._config(thread_id)
        paused = await self.interrupt_graph.ainvoke(dict(RUN_INPUT), config)
        if not paused.get("__interrupt__"):
            raise RuntimeError(f"expected an interrupt, got {paused!r}")
        return await self.interrupt_graph.ainvoke(Command(resume=RESUME_VALUE), config)

    def rss(self) -> int:
        return rss_bytes(os.getpid(), include_children=False)


class ServerDriver:
    """A server that speaks the LangGraph Agent Server API, driven through langgraph_sdk."""

    def __init__(self, server: ServerProcess) -> None:
        from langgraph_sdk import get_client

        self.server = server
        self.client = get_client(url=server.url, api_key=None)

    async def new_thread(self) -> str:
        thread = await self.client.threads.create()
        return str(thread["thread_id"])

    async def run(self, thread_id: str) -> dict[str, Any]:
        result = await self.client.runs.wait(thread_id, GRAPH_ID, input=dict(RUN_INPUT))
        return result if isinstance(result, dict) else {"result": result}

    async def first_update(self, thread_id: str) -> float:
        started = time.perf_counter()
        first: float | None = None
        # Read the stream to its end: hanging up early would cancel the run mid-way.
        async for part in self.client.runs.stream(
            thread_id, GRAPH_ID, input=dict(RUN_INPUT), stream_mode="updates"
        ):
            if part.event == "error":
                raise RuntimeError(f"stream error: {part.data!r}")
            if first is None and part.event.startswith("updates"):
                first = time.perf_counter() - started
        if first is None:
            raise RuntimeError("the stream produced no updates event")
        return first

    async def interrupt_roundtrip(self, thread_id: str) -> dict[str, Any]:
        await self.client.runs.wait(thread_id, INTERRUPT_GRAPH_ID, input=dict(RUN_INPUT))
        result = await self.client.runs.wait(
            thread_id, INTERRUPT_GRAPH_ID, command={"resume": RESUME_VALUE}
        )
        return result if isinstance(result, dict) else {"result": result}

    def rss(self) -> int:
        return rss_bytes(self.server.pid)

    async def aclose(self) -> None:
        await self.client.aclose()


# --- measuring -----------------------------------------------------------------------------------


def summarize_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "p50": statistics.median(ms),
        "p99": percentile(ms, 99),
        "mean": statistics.fmean(ms),
        "min": min(ms),
        "n": len(ms),
    }


async def timed(op: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await asyncio.wait_for(op, OP_TIMEOUT_S)
    return result, time.perf_counter() - started


async def bounded(n: int, concurrency: int, make: Callable[[], Awaitable[T]]) -> list[T]:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> T:
        async with sem:
            return await asyncio.wait_for(make(), OP_TIMEOUT_S)

    return await asyncio.gather(*(one() for _ in range(n)))


def check_run(result: dict[str, Any], what: str) -> None:
    if result.get("steps") != EXPECTED_STEPS or result.get("count") != 3:
        raise RuntimeError(f"{what}: unexpected final state {result!r}")


async def sequential(
    op: Callable[[str], Awaitable[Any]], threads: list[str], budget_s: float
) -> list[float]:
    """Time ``op`` on each thread in turn; stop early once past the budget with enough samples.

    The budget keeps a slow target (the reference server takes about a second per run) from
    stretching a bench run to many minutes; the sample count is in the JSON report.
    """
    samples: list[float] = []
    budget_end = time.perf_counter() + budget_s
    for thread_id in threads:
        samples.append((await timed(op(thread_id)))[1])
        if len(samples) >= MIN_SAMPLES and time.perf_counter() > budget_end:
            break
    return samples


async def measure(
    driver: Driver, n: int, concurrency: int, warmup: int, seq_budget: float
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    check_run((await timed(driver.run(await driver.new_thread())))[0], "run")
    resumed, _ = await timed(driver.interrupt_roundtrip(await driver.new_thread()))
    check_run(resumed, "interrupt round trip")
    for _ in range(warmup):
        await timed(driver.run(await driver.new_thread()))
        await timed(driver.first_update(await driver.new_thread()))
        await timed(driver.interrupt_roundtrip(await driver.new_thread()))

    threads = await bounded(n, concurrency, driver.new_thread)
    out["latency_ms"] = summarize_ms(await sequential(driver.run, threads, seq_budget))

    threads = await bounded(n, concurrency, driver.new_thread)
    sem = asyncio.Semaphore(concurrency)

    async def one(thread_id: str) -> None:
        async with sem:
            check_run(await asyncio.wait_for(driver.run(thread_id), OP_TIMEOUT_S), "run")

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one(t) for t in threads), return_exceptions=True)
    elapsed = time.perf_counter() - started
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if len(errors) == len(outcomes):
        raise RuntimeError(f"every concurrent run failed, e.g. {errors[0]!r}")
    out["throughput_rps"] = (len(outcomes) - len(errors)) / elapsed
    out["throughput_errors"] = len(errors)
    if errors:
        out["throughput_first_error"] = repr(errors[0])

    threads = await bounded(n, concurrency, driver.new_thread)
    firsts: list[float] = []
    budget_end = time.perf_counter() + seq_budget
    for i, thread_id in enumerate(threads):
        firsts.append(await asyncio.wait_for(driver.first_update(thread_id), OP_TIMEOUT_S))
        if i + 1 >= MIN_SAMPLES and time.perf_counter() > budget_end:
            break
    out["first_update_ms"] = summarize_ms(firsts)

    threads = await bounded(n, concurrency, driver.new_thread)
    out["interrupt_roundtrip_ms"] = summarize_ms(
        await sequential(driver.interrupt_roundtrip, threads, seq_budget)
    )
    out["rss_mib"] = driver.rss() / 2**20
    return out


async def bench_inproc(args: argparse.Namespace) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    module = load_graph_module()
    with tempfile.TemporaryDirectory(prefix="inproc-bench-") as tmp:
        async with AsyncSqliteSaver.from_conn_string(str(Path(tmp) / "checkpoints.db")) as saver:
            driver = InprocDriver(
                module.builder.compile(checkpointer=saver),
                module.interrupt_builder.compile(checkpointer=saver),
            )
            return await measure(driver, args.n, args.concurrency, args.warmup, args.seq_budget)


async def bench_server(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    await asyncio.to_thread(server.start, args.startup_timeout)
    print(f"[{server.name}] up in {server.startup_s:.1f}s (pid {server.pid}) at {server.url}")
    driver = ServerDriver(server)
    try:
        result = await measure(driver, args.n, args.concurrency, args.warmup, args.seq_budget)
    finally:
        await driver.aclose()
    result["startup_s"] = server.startup_s
    result["command"] = list(server.argv)
    return result


async def run_target(name: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"[{name}] running (n={args.n}, concurrency={args.concurrency}) …", flush=True)
    started = time.perf_counter()
    server: ServerProcess | None = None
    try:
        if name == "inproc":
            result = await bench_inproc(args)
        else:
            server = (
                dockyard_server()
                if name == "dockyard"
                else reference_server(n_jobs=args.reference_jobs)
            )
            try:
                result = await bench_server(server, args)
            finally:
                await asyncio.to_thread(server.stop)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)
        if isinstance(exc, TimeoutError):
            error = f"an operation took longer than {OP_TIMEOUT_S:.0f}s ({error})"
        print(f"[{name}] FAILED: {error}", file=sys.stderr)
        if not isinstance(exc, ServerError):
            traceback.print_exc(file=sys.stderr)
            if server is not None and server.log_tail():
                print(
                    f"[{name}] server log ({server.log_path}):\n{server.log_tail()}",
                    file=sys.stderr,
                )
        return {"ok": False, "error": error}
    result["ok"] = True
    print(f"[{name}] done in {time.perf_counter() - started:.1f}s", flush=True)
    return result


# --- reporting -----------------------------------------------------------------------------------

ROWS: tuple[tuple[str, str, Callable[[dict[str, Any]], float | None], str], ...] = (
    ("run latency p50", "ms", lambda r: r["latency_ms"]["p50"], "{:.2f}"),
    ("run latency p99", "ms", lambda r: r["latency_ms"]["p99"], "{:.2f}"),
    ("throughput", "runs/s", lambda r: r["throughput_rps"], "{:.1f}"),
    ("first `updates` event p50", "ms", lambda r: r["first_update_ms"]["p50"], "{:.2f}"),
    ("interrupt+resume p50", "ms", lambda r: r["interrupt_roundtrip_ms"]["p50"], "{:.2f}"),
    ("RSS after bench", "MiB", lambda r: r["rss_mib"], "{:.0f}"),
    ("startup to /ok", "s", lambda r: r.get("startup_s"), "{:.1f}"),
)


def render_table(results: dict[str, dict[str, Any]], concurrency: int) -> str:
    names = list(results)
    ratios = [
        (a, b)
        for a, b in (("dockyard", "reference"), ("dockyard", "inproc"), ("reference", "inproc"))
        if a in names and b in names
    ]
    header = ["metric", "unit", *names, *(f"{a} / {b}" for a, b in ratios)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, unit, get, fmt in ROWS:
        if label == "throughput":
            label = f"throughput @{concurrency}"
        values: dict[str, float | None] = {}
        for name in names:
            try:
                values[name] = get(results[name]) if results[name].get("ok") else None
            except (KeyError, TypeError):
                values[name] = None
        cells = [fmt.format(v) if v is not None else "—" for v in values.values()]
        for a, b in ratios:
            va, vb = values[a], values[b]
            cells.append(f"{va / vb:.2f}x" if va is not None and vb else "—")
        lines.append("| " + " | ".join([label, unit, *cells]) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    parser.add_argument("--n", type=int, default=200, help="runs per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds per target")
    parser.add_argument(
        "--seq-budget",
        type=float,
        default=60.0,
        help="seconds per sequential measurement before it stops early (at least 20 samples)",
    )
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds for /ok")
    parser.add_argument(
        "--reference-jobs",
        type=int,
        default=None,
        help="pass --n-jobs-per-worker to `langgraph dev` (its own default runs 1 job at a time)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    return args


async def main_async(args: argparse.Namespace) -> int:
    results: dict[str, dict[str, Any]] = {}
    for name in args.targets:
        results[name] = await run_target(name, args)

    table = render_table(results, args.concurrency)
    print()
    print(table)
    for name, result in results.items():
        if result.get("ok"):
            counts = ", ".join(
                f"{key.removesuffix('_ms')} {result[key]['n']}"
                for key in ("latency_ms", "first_update_ms", "interrupt_roundtrip_ms")
            )
            print(f"{name} samples: {counts}")
    for name, result in results.items():
        if not result.get("ok"):
            print(f"\n{name}: {result['error']}")
        elif result.get("throughput_errors"):
            print(
                f"\n{name}: {result['throughput_errors']} concurrent runs failed, e.g. "
                f"{result['throughput_first_error']}"
            )
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {
            "n": args.n,
            "concurrency": args.concurrency,
            "warmup": args.warmup,
            "seq_budget_s": args.seq_budget,
            "reference_jobs": args.reference_jobs,
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "results": results,
        "table_markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}")
    return 0 if any(r.get("ok") for r in results.values()) else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
