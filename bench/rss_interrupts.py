"""How a server's memory grows with threads parked at an interrupt.

    # against a server you started (give its pid so RSS can be read):
    .venv/bin/python bench/rss_interrupts.py --url http://127.0.0.1:2025 --pid 12345
    # or let the script start one (dockyard on :2025, or the reference `langgraph dev` on :2026):
    .venv/bin/python bench/rss_interrupts.py --start dockyard [--n 10000] [--every 1000]

Creates N threads, each with a background run (``runs.create``) of ``interrupt_graph`` that
stops at ``interrupt()``; runs are created in batches of --every with at most --concurrency
requests in flight, each batch is joined (every run has reached its interrupt) and then the
server's RSS, children included, is sampled. Prints the series and writes it as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from servers import (
    RESULTS_DIR,
    ServerProcess,
    dockyard_server,
    reference_server,
    rss_bytes,
)

GRAPH_ID = "interrupt_graph"


async def park_one(client: Any, sem: asyncio.Semaphore) -> tuple[str, str]:
    async with sem:
        thread = await client.threads.create()
        run = await client.runs.create(thread["thread_id"], GRAPH_ID, input={"count": 0})
        return thread["thread_id"], run["run_id"]


async def join_one(client: Any, sem: asyncio.Semaphore, thread_id: str, run_id: str) -> None:
    async with sem:
        await client.runs.join(thread_id, run_id)


async def drive(url: str, pid: int | None, n: int, every: int, concurrency: int) -> list[dict]:
    from langgraph_sdk import get_client

    client = get_client(url=url, api_key=None)
    sem = asyncio.Semaphore(concurrency)
    series: list[dict[str, Any]] = []

    def sample(threads: int, errors: int, started: float) -> None:
        rss_mib = rss_bytes(pid) / 2**20 if pid else None
        row = {
            "threads": threads,
            "rss_mib": rss_mib,
            "errors": errors,
            "elapsed_s": round(time.perf_counter() - started, 2),
        }
        series.append(row)
        rss_text = f"{rss_mib:8.1f} MiB" if rss_mib is not None else "   (no pid)"
        print(f"threads={threads:>7}  rss={rss_text}  errors={errors}  t={row['elapsed_s']}s")

    started = time.perf_counter()
    errors = 0
    done = 0
    ok: list[tuple[str, str]] = []
    try:
        sample(0, 0, started)
        while done < n:
            batch = min(every, n - done)
            parked = await asyncio.gather(
                *(park_one(client, sem) for _ in range(batch)), return_exceptions=True
            )
            ok = [p for p in parked if not isinstance(p, BaseException)]
            failed = [p for p in parked if isinstance(p, BaseException)]
            joined = await asyncio.gather(
                *(join_one(client, sem, t, r) for t, r in ok), return_exceptions=True
            )
            failed += [j for j in joined if isinstance(j, BaseException)]
            if failed:
                print(f"  {len(failed)} failures in this batch, e.g. {failed[0]!r}")
                if len(failed) == batch:
                    raise RuntimeError(f"a whole batch failed: {failed[0]!r}")
            errors += len(failed)
            done += batch
            sample(done, errors, started)
        if ok:
            state = await client.threads.get(ok[-1][0])
            print(f"last thread status: {state['status']} (expected 'interrupted')")
    finally:
        await client.aclose()
    return series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="server to drive (default: the started one)")
    parser.add_argument("--pid", type=int, default=None, help="server pid, for RSS readings")
    parser.add_argument("--start", choices=("dockyard", "reference"), default=None)
    parser.add_argument("--n", type=int, default=10_000, help="threads to park")
    parser.add_argument("--every", type=int, default=1000, help="sample RSS every N threads")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--out", default=str(RESULTS_DIR / "rss_interrupts.json"))
    args = parser.parse_args(argv)
    if args.url is None and args.start is None:
        args.start = "dockyard"

    server: ServerProcess | None = None
    try:
        if args.start:
            server = dockyard_server() if args.start == "dockyard" else reference_server()
            server.start(args.startup_timeout)
            print(f"[{server.name}] up in {server.startup_s:.1f}s, pid {server.pid}")
            args.url = args.url or server.url
            args.pid = args.pid or server.pid
        if args.pid is None:
            print("no --pid given: RSS will not be sampled", file=sys.stderr)
        series = asyncio.run(drive(args.url, args.pid, args.n, args.every, args.concurrency))
    except Exception as exc:
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()

    out = {"url": args.url, "server": args.start, "n": args.n, "series": series}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
