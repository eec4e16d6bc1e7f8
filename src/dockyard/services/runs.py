"""Runs: creation with multitask strategies, waiting, joining, streaming and cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.errors import Conflict, DockyardError, InvalidInput, NotFound, TooManyRequests
from dockyard.runtime.executor import ExecutionDeps
from dockyard.runtime.protocol import ProtocolPublisher
from dockyard.runtime.streaming import normalize_modes
from dockyard.runtime.webhooks import UrlPolicy
from dockyard.serde import json_dumps, json_loads
from dockyard.services.assistants import AssistantService
from dockyard.services.deployments import BASE as BASE_PIN
from dockyard.services.deployments import DeploymentService
from dockyard.services.ids import check_uuid, is_uuid, new_id
from dockyard.services.quotas import Limits, QuotaService
from dockyard.services.threads import ThreadService
from dockyard.storage.queue import in_seconds, public_run
from dockyard.streams.base import RESULT_EVENT, Event

log = logging.getLogger("dockyard.runs")

MULTITASK = ("reject", "interrupt", "rollback", "enqueue")
THREAD_STREAM_MODES = ("run_modes", "lifecycle", "state_update")


def wake_kind(run: dict[str, Any]) -> str:
    """What a new run's wake-up says: ``"base"`` for a run of the server's own project (no
    revision supervisor or cron scheduler needs to look), ``""`` for anything else."""
    return "base" if run.get("revision_id") is None else ""


def thread_runs_channel(thread_id: str) -> str:
    """The bus channel announcing a thread's new runs and state updates (thread joiners)."""
    return f"thread-runs:{thread_id}"
TERMINAL = ("success", "error", "timeout", "interrupted")
CANCEL_ACTIONS = ("interrupt", "rollback")

__all__ = ["PreparedRun", "RunService", "public_run"]


@dataclass
class PreparedRun:
    """A validated run not yet written: its ``runs`` row, and the metadata of the thread to
    create with it (stateless runs) or None."""

    record: dict[str, Any]
    new_thread: dict[str, Any] | None
    pin: str | None = None  # the revision to pin the thread to (its first run), or None
    limits: Limits | None = None  # the tenant's quotas, checked again in write()
    # The thread's metadata to record with the run (its graph and assistant), when it changes.
    thread_metadata: dict[str, Any] | None = None


class RunService:
    def __init__(
        self,
        deps: ExecutionDeps,
        assistants: AssistantService,
        threads: ThreadService,
        notify: Callable[..., None],
        *,
        webhook_policy: UrlPolicy,
        max_queue_depth: int = 0,
        deployments: DeploymentService | None = None,
        quotas: QuotaService | None = None,
    ) -> None:
        self.deps = deps
        self.queue = deps.queue
        self.bus = deps.bus
        self.assistants = assistants
        self.threads = threads
        self.notify = notify
        self.webhook_policy = webhook_policy
        self._announcing: set[asyncio.Future[None]] = set()
        self.max_queue_depth = max_queue_depth
        self.deployments = deployments
        self.quotas = quotas
        self._depth: tuple[float, int] = (-1.0, 0)  # (monotonic time, pending runs) counted
        # What a run's creation read last (``prepare``), for ``_create_at_once``, whose
        # statement checks it again: each assistant's graph and version, and the tenants
        # without a deployment.
        self._assistants_seen: dict[tuple[str, str], tuple[str, int]] = {}
        self._undeployed: set[str] = set()

    # ---- create ------------------------------------------------------------------------
    async def create(
        self, tenant: str, thread_id: str | None, payload: dict[str, Any], *,
        extra_kwargs: dict[str, Any] | None = None, run_id: str | None = None,
    ) -> dict[str, Any]:
        """Validate and enqueue a run. ``thread_id`` None makes a stateless run.

        ``extra_kwargs`` are internal execution options (the thread protocol's), stored with
        the run's kwargs. ``run_id`` is chosen by the caller when it must be known before the
        run exists (a trigger records it with the event's idempotency key first).
        """
        run = await self._create_at_once(tenant, thread_id, payload, extra_kwargs, run_id)
        if run is None:
            prepared = await self.prepare(tenant, thread_id, payload,
                                          extra_kwargs=extra_kwargs, run_id=run_id)
            limits = prepared.limits
            if limits is None or not (limits.max_concurrent_runs or limits.runs_per_minute):
                # Nothing to read inside the transaction: its statements go as one batch (one
                # round trip and one commit on PostgreSQL), a stateless run's new thread too.
                run, statements = self._write_statements(tenant, prepared)
                await self.deps.storage.execute_together(statements)
            else:
                async with self.deps.storage.transaction() as tx:
                    run = await self.write(tx, tenant, prepared)
        counted_at, depth = self._depth
        self._depth = (counted_at, depth + 1)  # this process's own runs count at once
        self.notify(wake_kind(run), others_told=True)  # the NOTIFY went with the commit
        # Joiners of the thread's stream learn of the run off the request path (a Redis
        # round trip); the run does not wait for it.
        task = asyncio.ensure_future(self.announce(run))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)
        return public_run(run)

    async def _create_at_once(
        self, tenant: str, thread_id: str | None, payload: dict[str, Any],
        extra_kwargs: dict[str, Any] | None, run_id: str | None,
    ) -> dict[str, Any] | None:
        """A run in one statement (PostgreSQL), or None: then ``create`` takes the full path,
        which reads first and raises what it finds wrong.

        ``prepare`` reads the assistant, the thread, its active runs and the deployment
        routing, then writes. When no quota counts runs, the assistant was read before, the
        tenant had no deployment and, on an existing thread, the strategy is ``enqueue``
        (active runs change nothing), the write alone decides. Its statement checks that the
        assistant still has the version and graph read before and the tenant still has no
        deployment; then it updates the thread (busy, pinned to the base where deployments
        exist, its graph in its metadata; only if it exists and is not pinned to a revision)
        or, for a stateless run, inserts its new thread (busy), inserts the run from that row
        and sends the NOTIFY. Nothing written: the full path, from its reads."""
        storage = self.deps.storage
        stateless = thread_id is None
        if (not storage.writable_ctes or (not stateless and not is_uuid(thread_id or ""))
                or (not stateless and (payload.get("multitask_strategy") or "enqueue")
                    != "enqueue")
                or payload.get("if_not_exists") not in (None, "create", "reject")
                or (self.deployments is not None and tenant not in self._undeployed)):
            return None
        try:
            assistant_id = self.assistants.resolve_id(tenant, payload["assistant_id"])
            seen = self._assistants_seen.get((tenant, assistant_id))
            if seen is None:
                return None
            limits = await self._admit(tenant)
            if limits is not None and (limits.max_concurrent_runs or limits.runs_per_minute):
                return None
            await self.check(payload, stateless=stateless)
        except DockyardError:
            return None  # the full path raises it, after the checks that come first there
        graph_id, version = seen
        tid = new_id() if stateless else check_uuid(thread_id or "", "thread_id")
        record = self._record(payload, run_id=run_id, revision=None, thread_id=tid,
                              assistant_id=assistant_id, graph_id=graph_id, version=version,
                              temporary=stateless, extra_kwargs=extra_kwargs)
        run, (insert, insert_params) = self.queue.insert_statement(tenant, record, when="th")
        notify = storage.notify_statement(wake_kind(run))
        assert notify is not None  # PostgreSQL
        deployed = "" if self.deployments is None else \
            " AND NOT EXISTS (SELECT 1 FROM deployments WHERE tenant_id = ?)"
        deployed_params = [] if self.deployments is None else [tenant]
        if stateless:
            thread_sql, thread_params = self.threads.repo.insert_statement(
                tenant, tid, {"graph_id": graph_id, "assistant_id": assistant_id},
                status="busy", revision_id=None if self.deployments is None else BASE_PIN,
                where="EXISTS (SELECT 1 FROM a)" + deployed)
            thread_params = [*thread_params, *deployed_params]
        else:
            pin = "" if self.deployments is None else " revision_id = COALESCE(revision_id, 'base'),"
            unpinned = "" if self.deployments is None else \
                " AND (revision_id IS NULL OR revision_id = 'base')"
            thread_sql = (
                f"UPDATE threads SET status = 'busy',{pin}"
                " metadata = CASE WHEN metadata -> 'graph_id' IS DISTINCT FROM to_jsonb(?::text)"
                " OR NOT jsonb_exists(metadata, 'assistant_id') THEN metadata"
                " || jsonb_build_object('graph_id', ?::text, 'assistant_id', ?::text)"
                " ELSE metadata END, updated_at = ?"
                f" WHERE tenant_id = ? AND thread_id = ? AND EXISTS (SELECT 1 FROM a)"
                f"{unpinned}{deployed}")
            thread_params = [graph_id, graph_id, assistant_id, run["created_at"], tenant, tid,
                             *deployed_params]
        sql = (
            "WITH a AS (SELECT 1 FROM assistants WHERE tenant_id = ? AND assistant_id = ?"
            " AND version = ? AND graph_id = ?),"
            f" th AS ({thread_sql} RETURNING thread_id),"
            f" r AS ({insert} RETURNING run_id)"
            f" {notify[0]} FROM r"  # SELECT pg_notify(…): a row if the run was inserted
        )
        params = [tenant, assistant_id, version, graph_id, *thread_params, *insert_params,
                  *notify[1]]
        if not await storage.fetchall(sql, params):
            return None
        return run

    async def _admit(self, tenant: str) -> Limits | None:
        """Backpressure and the tenant's quotas, before anything is read for a run: 429 over
        the queue's depth or the tenant's stored bytes; the tenant's limits."""
        if self.max_queue_depth and await self._queue_depth() >= self.max_queue_depth:
            raise TooManyRequests(
                f"The run queue is full ({self.max_queue_depth} pending runs, "
                "DOCKYARD_MAX_QUEUE_DEPTH); retry later",
                code="queue_full", retry_after=5,
            )
        return await self.quotas.before_run(tenant) if self.quotas is not None else None

    async def state_updated(self, thread_id: str, update: dict[str, Any]) -> None:
        """Tell the thread's joiners that its state was updated through the API."""
        await self._tell_joiners(thread_id, "state_update", json_dumps(update))

    async def announce(self, run: dict[str, Any]) -> None:
        """Tell the thread's joiners (GET /threads/{id}/stream) that a run was created."""
        await self._tell_joiners(run["thread_id"], "run", run["run_id"].encode())

    async def _tell_joiners(self, thread_id: str, event: str, data: bytes) -> None:
        try:
            await self.bus.send(thread_runs_channel(thread_id), event, data)
        except Exception as exc:  # what it tells happened; a joiner only misses it live
            log.warning("thread_joiners_not_told thread_id=%s event=%s error=%s",
                        thread_id, event, exc)

    async def check(self, payload: dict[str, Any], *, stateless: bool) -> None:
        """Validate a run payload without touching storage (crons check theirs at creation,
        long before a tick turns them into runs)."""
        strategy = payload.get("multitask_strategy") or "enqueue"
        if strategy not in MULTITASK:
            raise InvalidInput(f"multitask_strategy must be one of {list(MULTITASK)}")
        if payload.get("input") is not None and payload.get("command") is not None:
            raise InvalidInput("Send either 'input' or 'command', not both")
        normalize_modes(payload.get("stream_mode"))
        after = payload.get("after_seconds")
        if after is not None and (not isinstance(after, int | float) or after < 0):
            raise InvalidInput("after_seconds must be a non-negative number")
        durability = payload.get("durability")
        if durability is not None and durability not in ("sync", "async", "exit"):
            raise InvalidInput("durability must be 'sync', 'async' or 'exit'")
        on_completion = payload.get("on_completion")
        if on_completion is not None:
            if not stateless:
                raise InvalidInput("on_completion applies to stateless runs only (POST /runs)")
            if on_completion not in ("delete", "keep"):
                raise InvalidInput("on_completion must be 'delete' or 'keep'")
        on_disconnect = payload.get("on_disconnect")
        if on_disconnect is not None and on_disconnect not in ("cancel", "continue"):
            raise InvalidInput("on_disconnect must be 'cancel' or 'continue'")
        for key in ("interrupt_before", "interrupt_after"):
            value = payload.get(key)
            if value is not None and value != "*" and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise InvalidInput(f"{key} must be '*' or a list of node names")
        if payload.get("webhook"):
            await self.webhook_policy.acheck(payload["webhook"])
        if payload.get("checkpoint_id") and stateless:
            raise InvalidInput("checkpoint_id needs a thread (it refers to a thread's history)")

    async def prepare(
        self, tenant: str, thread_id: str | None, payload: dict[str, Any], *,
        thread_metadata: dict[str, Any] | None = None,
        extra_kwargs: dict[str, Any] | None = None, run_id: str | None = None,
    ) -> PreparedRun:
        """Everything before the run's rows are written: validation, the assistant, the
        thread's existence and the multitask strategy (which may cancel the thread's runs).

        ``thread_metadata`` is added to a stateless run's new thread.
        """
        limits = await self._admit(tenant)
        temporary = thread_id is None
        # The assistant, the thread, its active runs and the tenant's deployment routing are
        # read together: one round trip (one query on PostgreSQL) instead of four. Their
        # answers are used, and their errors raised, in the order of the checks below.
        assistant_id = self.assistants.resolve_id(tenant, payload["assistant_id"])
        valid_tid = check_uuid(thread_id or "", "thread_id") \
            if not temporary and is_uuid(thread_id or "") else None
        reads = [self.assistants.repo.get_statement(tenant, assistant_id)]
        if valid_tid is not None:
            reads += [self.threads.repo.get_statement(tenant, valid_tid),
                      self.queue.active_for_thread_statement(tenant, valid_tid)]
        if self.deployments is not None:
            reads.append(self.deployments.repo.routing_statement(tenant))
        rows = await self.deps.storage.fetch_batch(reads)
        assistant = self.assistants.found(assistant_id, rows[0][0] if rows[0] else None)
        thread_rows = (rows[1][0] if rows[1] else None, rows[2]) if valid_tid else None
        routing = (rows[-1][0] if rows[-1] else None) if self.deployments is not None else None
        self._saw(tenant, assistant, routing)
        await self.check(payload, stateless=temporary)
        strategy = payload.get("multitask_strategy") or "enqueue"
        new_thread: dict[str, Any] | None = None
        thread_meta: dict[str, Any] | None = None
        pinned: str | None = None
        if temporary:
            tid = new_id()
            new_thread = {**(thread_metadata or {}), "graph_id": assistant["graph_id"],
                          "assistant_id": assistant["assistant_id"]}
        else:
            # Not a UUID: the 422 comes here, after the assistant's checks, as it always did.
            tid = valid_tid or check_uuid(thread_id or "", "thread_id")
            assert thread_rows is not None
            row, active = thread_rows
            if row is None:
                if (payload.get("if_not_exists") or "reject") == "create":
                    await self.threads.create(tenant, thread_id=tid, if_exists="do_nothing")
                    row = await self.threads.get_row(tenant, tid)
                else:
                    raise NotFound(f"Thread '{tid}' not found", code="thread_not_found")
            elif payload.get("if_not_exists") not in (None, "create", "reject"):
                raise InvalidInput("if_not_exists must be 'create' or 'reject'")
            meta = row["metadata"]
            pinned = row.get("revision_id")
            if meta.get("graph_id") != assistant["graph_id"] or "assistant_id" not in meta:
                # Written by write(), with the run and the thread's status: one statement.
                thread_meta = {**meta, "graph_id": assistant["graph_id"],
                               "assistant_id": assistant["assistant_id"]}
            if active:
                if strategy == "reject":
                    raise Conflict(
                        f"Thread '{tid}' is busy with run {active[0]['run_id']}; "
                        "use multitask_strategy enqueue, interrupt or rollback",
                        code="thread_busy",
                    )
                if strategy in ("interrupt", "rollback"):
                    for other in active:
                        await self._cancel_one(tenant, other, strategy)

        revision, pin = (None, None) if self.deployments is None else \
            await self.deployments.route(tenant, tid, pinned, assistant["graph_id"],
                                         routing=(routing,))
        record = self._record(payload, run_id=run_id, revision=revision, thread_id=tid,
                              assistant_id=assistant["assistant_id"],
                              graph_id=assistant["graph_id"], version=assistant["version"],
                              temporary=temporary, extra_kwargs=extra_kwargs)
        return PreparedRun(record=record, new_thread=new_thread, pin=pin, limits=limits,
                           thread_metadata=thread_meta)

    def _saw(self, tenant: str, assistant: dict[str, Any], routing: dict[str, Any] | None
             ) -> None:
        """Remember what a creation read, for the next ones (``_create_at_once``)."""
        if len(self._assistants_seen) >= 1024:
            self._assistants_seen.clear()
        self._assistants_seen[(tenant, assistant["assistant_id"])] = (
            assistant["graph_id"], int(assistant["version"]))
        if self.deployments is not None:
            if routing is None:
                if len(self._undeployed) >= 1024:
                    self._undeployed.clear()
                self._undeployed.add(tenant)
            else:
                self._undeployed.discard(tenant)

    @staticmethod
    def _record(
        payload: dict[str, Any], *, run_id: str | None, revision: str | None, thread_id: str,
        assistant_id: str, graph_id: str, version: int, temporary: bool,
        extra_kwargs: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The ``runs`` row of a validated payload."""
        kwargs = {
            "input": payload.get("input"),
            "command": payload.get("command"),
            "config": payload.get("config") or {},
            "context": payload.get("context") or {},
            "stream_mode": normalize_modes(payload.get("stream_mode")),
            "stream_subgraphs": bool(payload.get("stream_subgraphs")),
            "stream_resumable": bool(payload.get("stream_resumable")),
            "interrupt_before": payload.get("interrupt_before"),
            "interrupt_after": payload.get("interrupt_after"),
            "webhook": payload.get("webhook"),
            "checkpoint": payload.get("checkpoint"),
            "checkpoint_id": payload.get("checkpoint_id"),
            "durability": payload.get("durability"),
            "on_disconnect": payload.get("on_disconnect") or "continue",
            "on_completion": payload.get("on_completion") or "delete",
            "feedback_keys": payload.get("feedback_keys"),
            **(extra_kwargs or {}),
        }
        record: dict[str, Any] = {
            "run_id": run_id or new_id(),
            "revision_id": revision,
            "thread_id": thread_id,
            "assistant_id": assistant_id,
            "assistant_version": version,
            "graph_id": graph_id,
            "metadata": payload.get("metadata") or {},
            "kwargs": kwargs,
            "multitask_strategy": payload.get("multitask_strategy") or "enqueue",
            "temporary": temporary,
            "priority": int(payload.get("priority") or 0),
        }
        after = payload.get("after_seconds")
        if after:
            record["available_at"] = in_seconds(after)
        return record

    async def _queue_depth(self) -> int:
        """Pending runs, for backpressure. A ``COUNT(*)`` on every creation costs a round trip
        and a scan of the pending index; while the queue is under half the limit, a count up
        to a second old is good enough (it cannot overshoot by more than a second's runs).
        Nearer the limit it is counted every time, so 429s start and stop on time."""
        counted_at, depth = self._depth
        now = asyncio.get_running_loop().time()
        if now - counted_at < 1.0 and depth < self.max_queue_depth // 2:
            return depth
        depth = await self.queue.count_pending()
        self._depth = (now, depth)
        return depth

    async def write(
        self, tx: Any, tenant: str, prepared: PreparedRun, *, kind: str | None = None,
    ) -> dict[str, Any]:
        """Write a prepared run (and a stateless run's thread) inside the transaction ``tx``,
        with the wake-up of other processes' workers (``notify_statement``, ``kind``: by default
        the run's ``wake_kind``), which their commit sends; the caller commits it and then
        wakes this process with ``notify(…, others_told=True)``."""
        if self.quotas is not None and prepared.limits is not None:
            await self.quotas.check_run(tx, tenant, prepared.limits)
        run, statements = self._write_statements(tenant, prepared, kind=kind)
        for sql, params in statements:
            await self.deps.storage.execute_in(tx, sql, params)
        return run

    def _write_statements(
        self, tenant: str, prepared: PreparedRun, *, kind: str | None = None,
    ) -> tuple[dict[str, Any], list[tuple[str, Sequence[Any]]]]:
        """The run's row, the thread's status (and pin, metadata) or a stateless run's new
        thread, busy, and the wake-up of other processes, as statements of one transaction."""
        record = prepared.record
        run, insert = self.queue.insert_statement(tenant, record)
        fields: dict[str, Any] = {"status": "busy"}
        if prepared.pin:
            fields["revision_id"] = prepared.pin
        if prepared.thread_metadata is not None:
            fields["metadata"] = prepared.thread_metadata
        if prepared.new_thread is not None:
            # One row each: the statements may run as one (Storage.execute_together), whose
            # parts do not see each other's rows, so the thread is inserted as it ends up.
            thread = self.threads.repo.insert_statement(
                tenant, record["thread_id"], prepared.new_thread, status="busy",
                revision_id=prepared.pin)
        else:
            thread = self.threads.repo.update_statement(tenant, record["thread_id"], **fields)
        statements = [insert, thread]
        notify = self.deps.storage.notify_statement(wake_kind(run) if kind is None else kind)
        if notify is not None:
            statements.append(notify)
        return run, statements

    # ---- read --------------------------------------------------------------------------
    async def get(self, tenant: str, thread_id: str | None, run_id: str) -> dict[str, Any]:
        row = await self._row(tenant, thread_id, run_id)
        return public_run(row)

    async def _row(self, tenant: str, thread_id: str | None, run_id: str) -> dict[str, Any]:
        rid = check_uuid(run_id, "run_id")
        tid = check_uuid(thread_id, "thread_id") if thread_id is not None else None
        row = await self.queue.get(tenant, rid, tid)
        if row is None:
            raise NotFound(f"Run '{run_id}' not found", code="run_not_found")
        return row

    async def list_for_thread(
        self, tenant: str, thread_id: str, *, status: str | None, limit: int, offset: int
    ) -> list[dict[str, Any]]:
        await self.threads.get_row(tenant, thread_id)
        rows = await self.queue.list_for_thread(
            tenant, check_uuid(thread_id, "thread_id"), status=status, limit=limit, offset=offset
        )
        return [public_run(r) for r in rows]

    async def delete(self, tenant: str, thread_id: str, run_id: str) -> None:
        row = await self._row(tenant, thread_id, run_id)
        if row["status"] in ("pending", "running"):
            raise Conflict("Run is still active; cancel it before deleting", code="run_active")
        await self.queue.delete(tenant, row["run_id"])

    # ---- cancel ------------------------------------------------------------------------
    async def cancel(
        self, tenant: str, thread_id: str | None, run_id: str, *, action: str = "interrupt",
        wait: bool = False,
    ) -> None:
        if action not in CANCEL_ACTIONS:
            raise InvalidInput(f"action must be one of {list(CANCEL_ACTIONS)}")
        row = await self._row(tenant, thread_id, run_id)
        if row["status"] not in ("pending", "running"):
            raise Conflict(f"Run '{run_id}' is already {row['status']}", code="run_not_active")
        await self._cancel_one(tenant, row, action)
        if wait:
            await self.result(tenant, row)

    async def _cancel_one(self, tenant: str, row: dict[str, Any], action: str) -> None:
        run_id = row["run_id"]
        # The row may be stale: a run seen 'pending' can be claimed by a worker meanwhile, and
        # a claimed run registers its control handler only as its executor starts. So try the
        # executor first, and settle in storage only a run that is still pending.
        for _ in range(40):
            if await self.bus.send_control(run_id, action):
                return
            if await self.queue.set_status(tenant, [run_id], "interrupted", only_from=("pending",)):
                break
            fresh = await self.queue.get(tenant, run_id)
            if fresh is None or fresh["status"] != "running":
                return  # it ended on its own meanwhile
            await asyncio.sleep(0.05)
        else:
            # 'running' with no executor in this process (its worker is gone): settle it here.
            await self.queue.set_status(tenant, [run_id], "interrupted")
        if action == "rollback":
            await self.queue.delete(tenant, run_id)
        if row["kwargs"].get("protocol") == "v3":
            # Its executor never ran: the thread's protocol subscribers learn it ended here.
            await ProtocolPublisher(self.bus, row["thread_id"], run_id,
                                    row.get("graph_id") or row["assistant_id"]).finished("cancelled")
        await self.bus.finish(run_id, [
            (RESULT_EVENT, json_dumps({"status": "interrupted", "values": None})),
            ("end", b"null"),
        ])
        remaining = await self.queue.active_for_thread(tenant, row["thread_id"])
        if not [r for r in remaining if r["run_id"] != run_id]:
            thread = await self.threads.repo.get(tenant, row["thread_id"])
            if thread is not None and thread["status"] == "busy":
                await self.threads.repo.update(
                    tenant, row["thread_id"],
                    status="interrupted" if thread["interrupts"] else "idle",
                )

    async def cancel_many(
        self, tenant: str, *, thread_id: str | None, run_ids: list[str] | None,
        status: str | None, action: str = "interrupt",
    ) -> int:
        if action not in CANCEL_ACTIONS:
            raise InvalidInput(f"action must be one of {list(CANCEL_ACTIONS)}")
        if status is not None and status not in ("pending", "running", "all"):
            raise InvalidInput("status must be 'pending', 'running' or 'all'")
        if run_ids:
            rows = [await self._row(tenant, thread_id, r) for r in run_ids]
        elif thread_id:
            rows = await self.queue.active_for_thread(tenant, check_uuid(thread_id, "thread_id"))
        elif status:
            rows = await self.queue.active(tenant, None if status == "all" else status)
        else:
            raise InvalidInput("Give run_ids, a thread_id or a status to cancel")
        n = 0
        for row in rows:
            if row["status"] in ("pending", "running") and (
                status in (None, "all") or row["status"] == status
            ):
                await self._cancel_one(tenant, row, action)
                n += 1
        return n

    # ---- results and streams -----------------------------------------------------------
    async def result(self, tenant: str, row: dict[str, Any], *, created: bool = False) -> Any:
        """Block until the run ends; return what the reference server returns from /wait.

        ``created``: the caller has just created the run, so its events cannot be gone yet
        (buffers outlive a run by minutes): no need to read the run's status first.
        """
        run_id = row["run_id"]
        fresh = None if created else await self.queue.get(tenant, run_id)
        if not created and (fresh is None or fresh["status"] not in ("pending", "running")):
            if not await self.bus.is_closed(run_id):
                return await self._values_from_thread(tenant, row, fresh)
        data = await self.bus.wait_result(run_id)
        if data is not None:
            return json_loads(data).get("values")
        return await self._values_from_thread(tenant, row, await self.queue.get(tenant, run_id))

    async def _values_from_thread(
        self, tenant: str, row: dict[str, Any], fresh: dict[str, Any] | None
    ) -> Any:
        if fresh is not None and fresh["status"] == "error" and fresh.get("error"):
            err = fresh["error"]
            return {"__error__": {"error": err.get("error"), "message": err.get("message")}}
        thread = await self.threads.repo.get(tenant, row["thread_id"])
        if thread is None:
            return None
        values = thread["values"]
        if thread["interrupts"] and isinstance(values, dict):
            values = {**values, "__interrupt__": [
                i for items in thread["interrupts"].values() for i in items
            ]}
        return values

    async def events(
        self, tenant: str, row: dict[str, Any], *, last_event_id: str | None = None,
        modes: list[str] | None = None,
    ) -> AsyncIterator[Event]:
        """The run's SSE events; a finished run whose buffer is gone yields nothing."""
        run_id = row["run_id"]
        fresh = await self.queue.get(tenant, run_id)
        finished = fresh is None or fresh["status"] not in ("pending", "running")
        if finished and not await self.bus.is_closed(run_id):
            return
        wanted: set[str] | None = set(modes) if modes else None
        if wanted is not None and "messages-tuple" in wanted:
            wanted.add("messages")
        async for ev in self.bus.subscribe(run_id, last_event_id=last_event_id):
            if ev.event.startswith("__"):
                continue
            base = ev.event.split("|", 1)[0].split("/", 1)[0]
            if wanted is None or base in wanted or ev.event in ("metadata", "error", "end"):
                yield ev

    # ---- a thread's stream: every run on it --------------------------------------------
    async def open_thread_stream(
        self, tenant: str, thread_id: str, *, last_event_id: str | None = None,
        modes: list[str] | None = None,
    ) -> AsyncIterator[Event]:
        """Events of every run on the thread, one run after the other, live.

        Starts with the thread's active runs (or, given ``Last-Event-ID``, the run it names,
        after that event) and follows each run created later. Ids are ``<run_id>/<event id>``
        so a client can resume across runs. ``run_modes`` (default): the runs' events and a
        ``metadata`` ``{"status": "run_done"}`` after each; ``lifecycle``: only the start and
        done ``metadata``; ``state_update``: ``state_update`` events when the thread's state is
        updated through the API. Raises 404/422 before anything streams.
        """
        wanted = set(modes or ["run_modes"])
        bad = wanted - set(THREAD_STREAM_MODES)
        if bad:
            raise InvalidInput(f"stream_mode must be among {list(THREAD_STREAM_MODES)}, "
                               f"not {sorted(bad)}")
        tid = check_uuid(thread_id, "thread_id")
        await self.threads.get_row(tenant, tid)
        start_run, after = None, None
        if last_event_id:
            start_run, sep, after = last_event_id.partition("/")
            if not sep:
                raise InvalidInput("Last-Event-ID of a thread stream is '<run_id>/<event id>'")
            check_uuid(start_run, "Last-Event-ID run id")
        channel = thread_runs_channel(tid)
        mark = await self.bus.last_id(channel)  # announcements after this are new runs
        runs = await self.queue.list_for_thread(tenant, tid, status=None, limit=100, offset=0)
        runs.reverse()  # oldest first
        if start_run is not None:
            known = [r["run_id"] for r in runs]
            pending = known[known.index(start_run):] if start_run in known else []
        else:
            pending = [r["run_id"] for r in runs if r["status"] in ("pending", "running")]
        return self._thread_stream(tenant, tid, channel, mark, pending, after, wanted)

    async def _thread_stream(
        self, tenant: str, tid: str, channel: str, mark: str | None, pending: list[str],
        after: str | None, wanted: set[str],
    ) -> AsyncIterator[Event]:
        seen = set(pending)
        announcements = self.bus.subscribe(channel, last_event_id=mark)
        try:
            while True:
                while pending:
                    run_id = pending.pop(0)
                    row = await self.queue.get(tenant, run_id)
                    if row is None:
                        continue
                    async for ev in self._one_run(tenant, row, after, wanted):
                        yield ev
                    after = None
                async for note in announcements:
                    if note.event == "state_update":
                        if "state_update" in wanted:
                            yield Event(f"state/{note.id}", "state_update", note.data)
                        continue
                    run_id = note.data.decode()
                    if run_id not in seen:
                        seen.add(run_id)
                        pending.append(run_id)
                        break
        finally:
            await announcements.aclose()  # type: ignore[attr-defined]

    async def _one_run(
        self, tenant: str, row: dict[str, Any], after: str | None, wanted: set[str]
    ) -> AsyncIterator[Event]:
        run_id = row["run_id"]
        if after == "done":
            return  # the client saw this run to its end
        runs_too = "run_modes" in wanted
        if runs_too or "lifecycle" in wanted:
            async for ev in self.events(tenant, row, last_event_id=after):
                if ev.event == "end":
                    continue
                if runs_too or ev.event == "metadata":
                    yield Event(f"{run_id}/{ev.id}", ev.event, ev.data)
            yield Event(f"{run_id}/done", "metadata",
                        json_dumps({"status": "run_done", "run_id": run_id}))
