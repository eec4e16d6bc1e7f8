"""Streaming benchmark (issue 4): events/s through one SSE and one WebSocket connection for a
token-streaming graph, time to first token added by the server over the in-process floor, and
memory per idle stream with many concurrent streaming clients on one server process.

    .venv/bin/python bench/stream_bench.py [--n 30] [--tokens 1000] [--clients 1000]

- **inproc** (the floor): ``graph.astream_events(version="v3")`` in this process with an
  in-memory checkpointer; time from the call to the first ``content-block-delta``, and protocol
  events per second over the whole run. **inproc_sqlite**: the same with ``AsyncSqliteSaver``
  and ``durability="sync"``, which is what the server does (the floor of bench/run_bench.py).
- **sse** / **ws**: ``dockyard dev bench/stream`` on a free port. Per sample: a new thread, an
  open event stream (SSE ``POST /threads/{id}/stream/events``, or the WebSocket with
  ``subscription.subscribe``), then ``run.start``; time from sending ``run.start`` to the first
  ``content-block-delta`` on the stream, and events per second until the run's ``completed``.
- **idle clients**: ``--clients`` SSE streams on as many threads, opened at once; the server's
  RSS before and after gives memory per idle stream. Then one run on one of the threads shows
  the streams are live.

Medians of ``--n`` samples after ``--warmup``; output: a table and bench/results/stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RESULTS_DIR, ServerProcess, dockyard_server, rss_bytes
from stats import percentile

PROJECT = Path(__file__).resolve().parent / "stream"


def is_delta(ev: dict[str, Any]) -> bool:
    return ev.get("method") == "messages" and ev["params"]["data"].get("event") == \
        "content-block-delta"


def is_root_end(ev: dict[str, Any]) -> bool:
    p = ev.get("params") or {}
    return ev.get("method") == "lifecycle" and p.get("namespace") == [] and \
        p["data"]["event"] in ("completed", "failed")


async def consume(events: Any, t0: float) -> tuple[float, float, int]:
    """(time to the first token, events/s, events) of one run's stream, read to its end."""
    first = None
    n = 0
    async for ev in events:
        n += 1
        if first is None and is_delta(ev):
            first = time.perf_counter() - t0
        if is_root_end(ev):
            break
    total = time.perf_counter() - t0
    return first or total, n / total, n


async def inproc_sample(saver: Any) -> tuple[float, float, int]:
    sys.path.insert(0, str(PROJECT))
    import warnings

    from graph import graph  # type: ignore[import-not-found]

    g = graph.copy(update={"checkpointer": saver})
    cfg = {"configurable": {"thread_id": str(uuid.uuid4())}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        stream = await g.astream_events(
            {"messages": [{"role": "user", "content": "go"}]}, cfg, version="v3",
            durability="sync")
        first = None
        n = 0
        async for ev in stream:
            n += 1
            if first is None and ev["method"] == "messages":
                data = ev["params"]["data"]
                d = data[0] if isinstance(data, list | tuple) else data
                if isinstance(d, dict) and d.get("event") == "content-block-delta":
                    first = time.perf_counter() - t0
        total = time.perf_counter() - t0
    return first or total, n / total, n


async def sse_sample(http: httpx.AsyncClient) -> tuple[float, float, int]:
    tid = (await http.post("/threads", json={})).json()["thread_id"]
    body = {"channels": ["messages", "lifecycle", "values"]}
    async with http.stream("POST", f"/threads/{tid}/stream/events", json=body) as resp:
        t0 = time.perf_counter()
        r = await http.post(f"/threads/{tid}/commands", json={
            "id": 1, "method": "run.start",
            "params": {"assistant_id": "tokens",
                       "input": {"messages": [{"role": "user", "content": "go"}]}}})
        assert r.json()["type"] == "success", r.text
        sse = (json.loads(line[6:]) async for line in resp.aiter_lines()
               if line.startswith("data: "))
        return await consume(sse, t0)


async def ws_sample(http: httpx.AsyncClient, url: str) -> tuple[float, float, int]:
    tid = (await http.post("/threads", json={})).json()["thread_id"]
    ws_url = url.replace("http://", "ws://") + f"/threads/{tid}/stream/events"
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"id": 1, "method": "subscription.subscribe",
                                  "params": {"channels": ["messages", "lifecycle", "values"]}}))
        json.loads(await ws.recv())
        t0 = time.perf_counter()
        await ws.send(json.dumps({"id": 2, "method": "run.start", "params": {
            "assistant_id": "tokens",
            "input": {"messages": [{"role": "user", "content": "go"}]}}}))
        frames = (f async for f in (json.loads(raw) async for raw in ws)
                  if f.get("type") == "event")
        return await consume(frames, t0)


async def idle_clients(server: ServerProcess, clients: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as http:
        tids = []
        for _ in range(clients):
            tids.append((await http.post("/threads", json={})).json()["thread_id"])
        await asyncio.sleep(1)
        before = rss_bytes(server.pid)
        opened: list[Any] = []
        ready = asyncio.Event()
        got_event = asyncio.Event()

        async def hold(i: int, tid: str) -> None:
            body = {"channels": ["messages", "lifecycle"]}
            async with http.stream("POST", f"/threads/{tid}/stream/events", json=body) as resp:
                opened.append(i)
                if len(opened) == clients:
                    ready.set()
                async for line in resp.aiter_lines():
                    if i == 0 and line.startswith("data: "):
                        got_event.set()

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(hold(i, t)) for i, t in enumerate(tids)]
        await asyncio.wait_for(ready.wait(), 120)
        open_s = time.perf_counter() - t0
        await asyncio.sleep(2)
        after = rss_bytes(server.pid)
        t1 = time.perf_counter()
        await http.post(f"/threads/{tids[0]}/commands", json={
            "id": 1, "method": "run.start", "params": {
                "assistant_id": "tokens",
                "input": {"messages": [{"role": "user", "content": "go"}]}}})
        await asyncio.wait_for(got_event.wait(), 60)
        first_event_s = time.perf_counter() - t1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"clients": clients, "open_all_s": round(open_s, 2),
            "rss_before_mib": round(before / 2**20, 1), "rss_after_mib": round(after / 2**20, 1),
            "kib_per_idle_stream": round((after - before) / clients / 1024, 1),
            "first_event_with_all_open_ms": round(first_event_s * 1000, 1)}


def summary(samples: list[tuple[float, float, int]]) -> dict[str, float]:
    ttft = [s[0] * 1000 for s in samples]
    eps = [s[1] for s in samples]
    return {"ttft_p50_ms": round(statistics.median(ttft), 2),
            "ttft_p90_ms": round(percentile(ttft, 90), 2),
            "events_per_s_p50": round(statistics.median(eps)),
            "events_per_run": samples[0][2], "n": len(samples)}


async def main_async(args: argparse.Namespace) -> int:
    os.environ["BENCH_TOKENS"] = str(args.tokens)
    results: dict[str, Any] = {"tokens": args.tokens}
    import tempfile

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    memory = InMemorySaver()
    for _ in range(args.warmup):
        await inproc_sample(memory)
    results["inproc"] = summary([await inproc_sample(memory) for _ in range(args.n)])
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncSqliteSaver.from_conn_string(f"{tmp}/cp.sqlite") as durable:
            for _ in range(args.warmup):
                await inproc_sample(durable)
            results["inproc_sqlite"] = summary(
                [await inproc_sample(durable) for _ in range(args.n)])
    server = dockyard_server(PROJECT, port=args.port)
    server.env["BENCH_TOKENS"] = str(args.tokens)
    server.start(timeout=60)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            for _ in range(args.warmup):
                await sse_sample(http)
                await ws_sample(http, server.url)
            # Interleaved, so both transports see the same machine conditions.
            sse, ws = [], []
            for _ in range(args.n):
                sse.append(await sse_sample(http))
                ws.append(await ws_sample(http, server.url))
        results["sse"] = summary(sse)
        results["ws"] = summary(ws)
        if args.clients:
            results["idle"] = await idle_clients(server, args.clients)
    finally:
        server.stop()
    floor = results["inproc"]["ttft_p50_ms"]
    durable = results["inproc_sqlite"]["ttft_p50_ms"]
    print(f"\nStreaming, {args.tokens}-token message, medians of {args.n} (warmup {args.warmup})")
    print("inproc: in-memory checkpointer; inproc_sqlite: AsyncSqliteSaver, durability=sync "
          "(what the server does)\n")
    print("| target | TTFT p50 ms | TTFT p90 ms | added over inproc p50 ms | added over "
          "inproc_sqlite p50 ms | events/s p50 | events/run |")
    print("|---|---|---|---|---|---|---|")
    for name in ("inproc", "inproc_sqlite", "sse", "ws"):
        r = results[name]
        added = "—" if name.startswith("inproc") else f"{r['ttft_p50_ms'] - floor:.2f}"
        added2 = "—" if name.startswith("inproc") else f"{r['ttft_p50_ms'] - durable:.2f}"
        print(f"| {name} | {r['ttft_p50_ms']} | {r['ttft_p90_ms']} | {added} | {added2} | "
              f"{r['events_per_s_p50']} | {r['events_per_run']} |")
    if "idle" in results:
        i = results["idle"]
        print(f"\n{i['clients']} idle SSE streams on one `dockyard dev` process: opened in "
              f"{i['open_all_s']} s; RSS {i['rss_before_mib']} → {i['rss_after_mib']} MiB "
              f"({i['kib_per_idle_stream']} KiB per stream); a run's first event reached its "
              f"stream in {i['first_event_with_all_open_ms']} ms with all open.")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "stream.json").write_text(json.dumps(results, indent=2))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tokens", type=int, default=1000)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--port", type=int, default=2027)
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
