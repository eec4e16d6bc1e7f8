"""Run traces and the queue overview, as the API answers them (framework-free).

A trace is read only through its run: ``RunService.get`` checks that the run belongs to the
caller's tenant (and thread), so a trace is exactly as visible as its run. Listings are
bounded (``MAX_SPANS_PAGE``) and carry no bulky values; one span's input, output and stack
trace come from ``span``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dockyard.errors import InvalidInput, NotFound
from dockyard.services.runs import RunService
from dockyard.storage.base import Storage
from dockyard.storage.traces import QueueOverview, Traces

MAX_SPANS_PAGE = 2000
SPAN_KINDS = ("node", "llm", "tool")


def _iso(ms: float | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def public_span(row: dict[str, Any]) -> dict[str, Any]:
    end = row.get("end_ms")
    span = {
        "attempt": row["attempt"], "seq": row["seq"], "parent_seq": row["parent_seq"],
        "kind": row["kind"], "name": row["name"], "namespace": row["namespace"] or None,
        "step": row["step"], "status": row["status"],
        "start_ms": row["start_ms"], "end_ms": end,
        "duration_ms": None if end is None else round(end - row["start_ms"], 3),
        "metadata": row["metadata"],
    }
    if "detail" in row:  # one span: its values, and its times as ISO text too
        span.update(detail=row["detail"], started_at=_iso(row["start_ms"]), ended_at=_iso(end))
    return span


class TraceService:
    def __init__(self, storage: Storage, runs: RunService) -> None:
        self.repo = Traces(storage)
        self.queue_view = QueueOverview(storage)
        self.runs = runs

    async def trace(
        self, tenant: str, thread_id: str, run_id: str, *, limit: int = 500, offset: int = 0,
        kinds: list[str] | None = None,
    ) -> dict[str, Any]:
        """The run, its trace header and one page of spans (``next_offset`` when more)."""
        if not 0 < limit <= MAX_SPANS_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_SPANS_PAGE}")
        for kind in kinds or ():
            if kind not in SPAN_KINDS:
                raise InvalidInput(f"unknown span kind {kind!r}; use {list(SPAN_KINDS)}")
        run = await self.runs.get(tenant, thread_id, run_id)  # 404 unless the tenant's
        row = await self.runs.queue.get(tenant, run["run_id"]) or {}
        header = await self.repo.header(tenant, run_id)
        rows = await self.repo.spans(tenant, run_id, limit=limit + 1, offset=offset,
                                     kinds=kinds or ())
        more = len(rows) > limit
        return {
            "run": run | {"started_at": row.get("started_at"), "ended_at": row.get("ended_at")},
            "trace": None if header is None else {
                "attempt": header["attempt"], "base_checkpoint_id": header["base_checkpoint_id"],
                "span_count": header["span_count"], "dropped": header["dropped"],
                "totals": header["metadata"], "updated_at": header["updated_at"],
            },
            "spans": [public_span(r) for r in rows[:limit]],
            "next_offset": offset + limit if more else None,
        }

    async def span(
        self, tenant: str, thread_id: str, run_id: str, seq: int, attempt: int | None = None
    ) -> dict[str, Any]:
        """One span with its input, output and (for a failure) stack trace."""
        await self.runs.get(tenant, thread_id, run_id)
        if attempt is None:
            header = await self.repo.header(tenant, run_id)
            attempt = header["attempt"] if header else 1
        row = await self.repo.span(tenant, run_id, attempt, seq)
        if row is None:
            raise NotFound(f"Span {seq} (attempt {attempt}) of run {run_id} not found")
        return public_span(row)

    async def sweep(self, before: str) -> int:
        return await self.repo.sweep(before)

    async def queue(self, tenant: str, *, limit: int = 50) -> dict[str, Any]:
        """The tenant's queue: depth by status and priority, running runs with their worker
        and lease, the oldest pending runs, the latest failures; workers seen in its runs."""
        view = await self.queue_view.overview(tenant, limit=limit)
        for r in view["failures"]:  # the stack trace is on the run and in its trace
            err = r.get("error") or {}
            r["error"] = {"error": err.get("error"), "message": err.get("message")}
        now = datetime.now(UTC).isoformat()
        workers: dict[str, dict[str, Any]] = {}
        for r in view["running"]:
            if not r["worker_id"]:
                continue
            w = workers.setdefault(r["worker_id"], {"worker_id": r["worker_id"], "runs": 0,
                                                    "lease_until": r["lease_until"]})
            w["runs"] += 1
            w["lease_until"] = max(w["lease_until"] or "", r["lease_until"] or "") or None
        for w in workers.values():
            w["lease_expired"] = bool(w["lease_until"]) and w["lease_until"] < now
        totals = {"pending": 0, "running": 0}
        for d in view["depth"]:
            totals[d["status"]] = totals.get(d["status"], 0) + int(d["n"])
        return {**view, "totals": totals, "workers": list(workers.values()), "now": now}
