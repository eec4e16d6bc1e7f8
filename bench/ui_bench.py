"""Debugger UI benchmark (issue 5): a thread with ~1,000 checkpoints and a run of 500 steps.

    .venv/bin/python bench/ui_bench.py [--checkpoints 1000] [--steps 500] [--n 5]

Starts ``dockyard dev bench/ui``, builds the threads through the API (not timed), then with
Playwright driving ``/usr/bin/chromium`` (headless) opens the thread page and measures, per
sample (medians of ``--n``): time until the page is interactive (the state timeline's first
page rendered and clickable), the API calls the page made in that time and the 500 ms after
(count, slowest time to headers, bytes; the live view's event stream counts as a call with no
body), and the time of the history API call on its own. Payload sizes show that responses are paginated, not
proportional to the thread's length. The 500-step run's trace page (``#/threads/<id>/runs/<id>``)
is measured the same way: interactive when its waterfall is drawn and a span opens; the trace
listing carries no inputs or outputs (one span's come on click), so its size grows by ~0.3 KB a
step, and it is paged (at most 2,000 spans a call).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import dockyard_server

PROJECT = Path(__file__).resolve().parent / "ui"


def build_thread(http: httpx.Client, steps: int) -> str:
    tid = http.post("/threads", json={}).json()["thread_id"]
    r = http.post(f"/threads/{tid}/runs/wait", json={
        "assistant_id": "loop", "input": {"target": steps},
        "config": {"recursion_limit": steps + 10}}, timeout=600)
    r.raise_for_status()
    return tid


def measure_page(page: Any, base: str, tid: str, run_id: str | None = None) -> dict[str, float]:
    calls: list[tuple[str, float, int]] = []
    starts: dict[Any, float] = {}
    page.on("request", lambda req: starts.__setitem__(req, time.perf_counter()))

    def done(resp: Any) -> None:
        req = resp.request
        if "/ui" in req.url or req.url.endswith(".js") or req.url.endswith(".css"):
            return
        if req.url.endswith("/stream/events"):  # the live view's stream: open, never "done"
            calls.append((req.url, time.perf_counter() - starts.get(req, time.perf_counter()), 0))
            return
        try:
            size = len(resp.body())
        except Exception:
            size = 0
        calls.append((req.url, time.perf_counter() - starts.get(req, time.perf_counter()), size))

    page.on("response", done)
    t0 = time.perf_counter()
    if run_id is not None:  # the run's trace page: the waterfall, then one span opened
        page.goto(f"{base}/ui/#/threads/{tid}/runs/{run_id}")
        last = page.locator("[data-waterfall] .wf-row").last
        last.wait_for(timeout=30_000)
        last.click()
        page.locator(".trace-side .tabs").wait_for()
    else:
        page.goto(f"{base}/ui/#/threads/{tid}")
        first = page.locator("[data-checkpoint]").first
        first.wait_for(timeout=30_000)
        first.click()  # interactive: the inspector opens for it
        page.locator(".timeline [role=tablist], .timeline .tabs, .timeline").first.wait_for()
    interactive = time.perf_counter() - t0
    page.wait_for_timeout(500)  # calls still in flight finish (the live stream stays open)
    page.remove_listener("response", done)
    return {"interactive_ms": interactive * 1000, "api_calls": len(calls),
            "slowest_call_ms": max((c[1] for c in calls), default=0) * 1000,
            "api_bytes": sum(c[2] for c in calls),
            "largest_response_bytes": max((c[2] for c in calls), default=0)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", type=int, default=1000)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--n", type=int, default=5)
    p.add_argument("--port", type=int, default=2036)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    server = dockyard_server(PROJECT, port=args.port)
    server.start(timeout=60)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            # N steps write about N + 2 checkpoints.
            big = build_thread(http, args.checkpoints - 2)
            run500 = build_thread(http, args.steps)
            history_ms = []
            for _ in range(args.n):
                t = time.perf_counter()
                page_ = http.post(f"/threads/{big}/history", json={"limit": 20})
                history_ms.append((time.perf_counter() - t) * 1000)
                history_bytes = len(page_.content)
            state = http.get(f"/threads/{big}/state").json()
            steps_done = len(state["values"]["items"])
            run500_id = http.get(f"/threads/{run500}/runs").json()[0]["run_id"]
            trace_ms = []
            for _ in range(args.n):
                t = time.perf_counter()
                tr = http.get(f"/threads/{run500}/runs/{run500_id}/trace", params={"limit": 2000})
                trace_ms.append((time.perf_counter() - t) * 1000)
                trace_bytes, trace_spans = len(tr.content), len(tr.json()["spans"])
        results: dict[str, Any] = {"checkpoints_thread_steps": steps_done}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox"])
            pages = (("thread_1000_checkpoints", big, None), ("run_500_steps", run500, None),
                     ("trace_500_steps", run500, run500_id))
            for name, tid, rid in pages:
                samples = []
                for _ in range(args.n + 1):
                    page = browser.new_page()
                    samples.append(measure_page(page, server.url, tid, rid))
                    page.close()
                samples = samples[1:]  # the first warms the browser's cache
                results[name] = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            browser.close()
        results["history_page_ms_p50"] = statistics.median(history_ms)
        results["history_page_bytes"] = history_bytes
        results["trace_ms_p50"] = statistics.median(trace_ms)
    finally:
        server.stop()
    print(f"\nDebugger UI, medians of {args.n} (after one warm-up), dockyard dev on SQLite\n")
    print("| thread | page interactive (ms) | API calls | slowest call (ms) | API bytes | "
          "largest response (bytes) |")
    print("|---|---|---|---|---|---|")
    for name in ("thread_1000_checkpoints", "run_500_steps", "trace_500_steps"):
        r = results[name]
        print(f"| {name} | {r['interactive_ms']:.0f} | {r['api_calls']:.0f} | "
              f"{r['slowest_call_ms']:.0f} | {r['api_bytes']:.0f} | "
              f"{r['largest_response_bytes']:.0f} |")
    print(f"\nPOST /threads/{{id}}/history limit 20 on the {steps_done}-step thread: "
          f"p50 {results['history_page_ms_p50']:.1f} ms, {results['history_page_bytes']} bytes")
    print(f"GET /threads/{{id}}/runs/{{id}}/trace of the {args.steps}-step run ({trace_spans} spans): "
          f"p50 {results['trace_ms_p50']:.1f} ms, {trace_bytes} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
