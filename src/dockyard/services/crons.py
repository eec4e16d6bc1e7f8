"""Crons: runs on a schedule, for a thread or stateless, fired exactly once per tick.

A cron stores a run payload and a schedule; ``next_run_date`` is its next tick (UTC). Firing a
tick has two steps, so that a tick fires once even with several schedulers and across a crash:

1. **Claim**: a compare-and-set moves ``next_run_date`` to the first tick after *now* and
   writes a ``claim_token``, only if ``next_run_date`` still holds the due tick. Of several
   schedulers reading the same due row, one wins; the others see the row already moved.
2. **Fire**: the run is prepared (validation, multitask strategy) through ``RunService`` and
   written in one transaction with the clearing of the claim token. The run exists if and only
   if the token is gone.

A scheduler that dies between 1 and 2 leaves the token; once ``claimed_at`` is older than
``CLAIM_STALE_SECONDS`` another scheduler takes the claim over (a compare-and-set on the token)
and fires the tick. Should the first one wake up and finish too, its transaction finds the
token changed and writes nothing.

**Downtime policy.** Computing the next tick from *now* coalesces missed ticks: after downtime
a cron fires once for all the ticks it missed, as soon as a scheduler runs, then continues with
the next future tick — no burst of catch-up runs. A cron never starts a run after its
``end_time``, even to catch up; a tick whose run cannot be created (thread busy with
``multitask_strategy="reject"``, queue full, assistant gone) is skipped and logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from dockyard.errors import DockyardError, InvalidInput, NotFound, StorageError
from dockyard.services.ids import check_uuid, default_assistant_id, is_uuid, new_id
from dockyard.services.runs import RunService
from dockyard.storage.base import Storage, utcnow
from dockyard.storage.crons import Crons

log = logging.getLogger("dockyard.crons")

# A claim older than this whose run was never written belongs to a dead scheduler. Firing takes
# milliseconds (at most a few seconds when the multitask strategy cancels runs), so a live
# scheduler is never overtaken; and should it be, the token check keeps the tick single.
CLAIM_STALE_SECONDS = 60.0

# The run fields a cron stores (its ``payload``) and passes to every run it fires.
RUN_FIELDS = ("input", "config", "context", "interrupt_before", "interrupt_after", "webhook",
              "multitask_strategy", "stream_mode", "stream_subgraphs", "stream_resumable",
              "durability")
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def check_schedule(schedule: str) -> str:
    """A standard 5-field cron expression (minute hour day-of-month month day-of-week) or an
    alias such as ``@daily``."""
    text = " ".join(str(schedule).split())
    if text.lower() in ALIASES:
        return text.lower()
    if len(text.split(" ")) != 5 or not croniter.is_valid(text):
        raise InvalidInput(
            f"schedule {schedule!r} is not a cron expression: use 5 fields (minute hour "
            f"day-of-month month day-of-week, e.g. '*/5 * * * *') or one of {list(ALIASES)}",
            code="invalid_schedule",
        )
    return text


def check_timezone(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"timezone {name!r} is not an IANA time zone name (e.g. 'America/New_York', 'UTC')",
            code="invalid_timezone",
        ) from None
    return name


def iso(dt: datetime) -> str:
    """UTC ISO-8601, comparable as text with ``utcnow()`` (both dialects store text)."""
    return dt.astimezone(UTC).isoformat()


def utc_datetime(value: datetime) -> str:
    """A client's datetime in UTC; a naive one is taken as UTC."""
    return iso(value if value.tzinfo is not None else value.replace(tzinfo=UTC))


def next_tick(schedule: str, timezone: str | None, after: datetime) -> datetime | None:
    """The first tick strictly after ``after``, read in ``timezone`` (None: UTC); None if the
    expression never matches (e.g. '0 0 31 2 *')."""
    tz = ZoneInfo(timezone) if timezone else UTC
    try:
        tick: datetime = croniter(schedule, after.astimezone(tz)).get_next(datetime)
    except CroniterBadDateError:
        return None
    return tick.astimezone(UTC)


def next_run_date(row: dict[str, Any], after: datetime) -> str | None:
    """The cron's next tick after ``after``; None once it would fall after ``end_time``."""
    tick = next_tick(row["schedule"], row.get("timezone"), after)
    if tick is None:
        return None
    end = row.get("end_time")
    if end is not None and tick > datetime.fromisoformat(end):
        return None
    return iso(tick)


def public_cron(row: dict[str, Any]) -> dict[str, Any]:
    """A cron row in the Agent Server's ``Cron`` shape."""
    return {
        "cron_id": row["cron_id"],
        "assistant_id": row["assistant_id"],
        "thread_id": row["thread_id"],
        "on_run_completed": row["on_run_completed"],
        "end_time": row["end_time"],
        "schedule": row["schedule"],
        "timezone": row["timezone"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "payload": row["payload"],
        "user_id": row["user_id"],
        "next_run_date": row["next_run_date"],
        "metadata": row["metadata"],
        "enabled": bool(row["enabled"]),
    }


class CronService:
    def __init__(self, db: Storage, runs: RunService, notify: Callable[[], None]) -> None:
        self.db = db
        self.repo = Crons(db)
        self.runs = runs
        self.notify = notify  # a cron changed: wake the schedulers

    # ---- CRUD ------------------------------------------------------------------------------
    async def create(
        self, tenant: str, thread_id: str | None, *, schedule: str, payload: dict[str, Any],
        metadata: dict[str, Any] | None = None, timezone: str | None = None,
        end_time: datetime | None = None, enabled: bool = True,
        on_run_completed: str | None = None,
    ) -> dict[str, Any]:
        """A cron on ``thread_id``, or stateless (a new thread per run) if None."""
        row: dict[str, Any] = {
            "cron_id": new_id(),
            "schedule": check_schedule(schedule),
            "timezone": check_timezone(timezone),
            "end_time": utc_datetime(end_time) if end_time is not None else None,
            "enabled": enabled,
            "metadata": metadata or {},
        }
        if thread_id is not None:
            if on_run_completed is not None:
                raise InvalidInput("on_run_completed applies to stateless crons only "
                                   "(POST /runs/crons); a thread cron's runs keep their thread")
            row["thread_id"] = check_uuid(thread_id, "thread_id")
            await self.runs.threads.get_row(tenant, row["thread_id"])
        elif on_run_completed not in (None, "delete", "keep"):
            raise InvalidInput("on_run_completed must be 'delete' or 'keep'")
        else:
            row["on_run_completed"] = on_run_completed or "delete"
        assistant = await self.runs.assistants.resolve(tenant, payload["assistant_id"])
        row["assistant_id"] = assistant["assistant_id"]
        row["payload"] = {**payload, "assistant_id": assistant["assistant_id"]}
        await self.runs.check(row["payload"], stateless=thread_id is None)
        row["next_run_date"] = self._first_run_date(row)
        created = await self.repo.insert(tenant, row)
        self.notify()
        return public_cron(created)

    def _first_run_date(self, row: dict[str, Any]) -> str | None:
        nxt = next_run_date(row, datetime.now(UTC))
        if nxt is None and next_tick(row["schedule"], row.get("timezone"), datetime.now(UTC)) is None:
            raise InvalidInput(f"schedule {row['schedule']!r} never fires",
                               code="invalid_schedule")
        return nxt

    async def get_row(self, tenant: str, cron_id: str) -> dict[str, Any]:
        row = await self.repo.get(tenant, check_uuid(cron_id, "cron_id"))
        if row is None:
            raise NotFound(f"Cron '{cron_id}' not found", code="cron_not_found")
        return row

    async def get(self, tenant: str, cron_id: str) -> dict[str, Any]:
        return public_cron(await self.get_row(tenant, cron_id))

    async def patch(self, tenant: str, cron_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply the fields present in ``changes``. A run field, ``metadata``, ``timezone`` or
        ``end_time`` sent as None resets it (``end_time``: no end); ``metadata`` merges.
        A change of schedule, timezone, end_time or enabled recomputes ``next_run_date``
        from now (re-enabling a cron does not replay the ticks it missed while disabled)."""
        row = await self.get_row(tenant, cron_id)
        stateless = row["thread_id"] is None
        fields: dict[str, Any] = {}
        for key in ("schedule", "enabled"):
            if key in changes and changes[key] is None:
                raise InvalidInput(f"{key} cannot be null")
        if "schedule" in changes:
            fields["schedule"] = check_schedule(changes["schedule"])
        if "enabled" in changes:
            fields["enabled"] = int(bool(changes["enabled"]))
        if "timezone" in changes:
            fields["timezone"] = check_timezone(changes["timezone"])
        if "end_time" in changes:
            end = changes["end_time"]
            fields["end_time"] = utc_datetime(end) if end is not None else None
        if "on_run_completed" in changes:
            value = changes["on_run_completed"]
            if not stateless and value is not None:
                raise InvalidInput("on_run_completed applies to stateless crons only")
            if stateless:
                fields["on_run_completed"] = value or "delete"
        if "metadata" in changes:
            meta = changes["metadata"]
            fields["metadata"] = {**row["metadata"], **meta} if meta is not None else {}
        payload = dict(row["payload"])
        touched = False
        for key in RUN_FIELDS:
            if key in changes:
                touched = True
                if changes[key] is None:
                    payload.pop(key, None)
                else:
                    payload[key] = changes[key]
        if touched:
            await self.runs.check(payload, stateless=stateless)
            fields["payload"] = payload
        if fields.keys() & {"schedule", "timezone", "end_time", "enabled"}:
            fields["next_run_date"] = self._first_run_date({**row, **fields})
        if fields:
            await self.repo.update(tenant, row["cron_id"], **fields)
            self.notify()
        return await self.get(tenant, row["cron_id"])

    async def delete(self, tenant: str, cron_id: str) -> None:
        if not await self.repo.delete(tenant, check_uuid(cron_id, "cron_id")):
            raise NotFound(f"Cron '{cron_id}' not found", code="cron_not_found")

    def _filters(
        self, tenant: str, assistant_id: str | None, thread_id: str | None
    ) -> tuple[str | None, str | None]:
        if assistant_id is not None:
            if is_uuid(assistant_id):
                assistant_id = check_uuid(assistant_id, "assistant_id")
            elif assistant_id in self.runs.assistants.registry.graph_ids:
                assistant_id = default_assistant_id(assistant_id, tenant)
            else:
                raise InvalidInput(f"assistant_id {assistant_id!r} is neither a UUID nor a "
                                   "graph id")
        if thread_id is not None:
            thread_id = check_uuid(thread_id, "thread_id")
        return assistant_id, thread_id

    async def search(
        self, tenant: str, *, assistant_id: str | None = None, thread_id: str | None = None,
        **kw: Any,
    ) -> list[dict[str, Any]]:
        assistant_id, thread_id = self._filters(tenant, assistant_id, thread_id)
        rows = await self.repo.search(tenant, assistant_id=assistant_id, thread_id=thread_id,
                                      **kw)
        return [public_cron(r) for r in rows]

    async def count(
        self, tenant: str, *, assistant_id: str | None = None, thread_id: str | None = None,
        **kw: Any,
    ) -> int:
        assistant_id, thread_id = self._filters(tenant, assistant_id, thread_id)
        return await self.repo.count(tenant, assistant_id=assistant_id, thread_id=thread_id,
                                     **kw)

    # ---- firing (the scheduler) ------------------------------------------------------------
    async def fire_due(self, *, limit: int = 100) -> int:
        """Claim and fire the due ticks of up to ``limit`` crons; returns the runs created."""
        now = datetime.now(UTC)
        fired = 0
        for row in await self.repo.due(iso(now), limit):
            tick = row["next_run_date"]
            token = uuid.uuid4().hex
            if not await self.repo.claim(row["tenant_id"], row["cron_id"], tick,
                                         next_run_date(row, now), token):
                continue  # another scheduler took this tick (or the cron changed meanwhile)
            fired += await self._fire(row, tick, token)
        return fired

    async def recover_claims(self, *, older_than: float | None = CLAIM_STALE_SECONDS) -> int:
        """Fire the ticks claimed by schedulers that died before firing them (``older_than``
        None: every claim — an embedded server at start-up, the only process on its file)."""
        before = None if older_than is None else iso(
            datetime.now(UTC) - timedelta(seconds=older_than)
        )
        fired = 0
        for row in await self.repo.stale_claims(before):
            token = uuid.uuid4().hex
            if await self.repo.take_over(row["cron_id"], row["claim_token"], token):
                log.warning("cron_claim_recovered cron_id=%s tick=%s", row["cron_id"],
                            row["claimed_tick"])
                fired += await self._fire(row, row["claimed_tick"], token)
        return fired

    async def _fire(self, row: dict[str, Any], tick: str, token: str) -> int:
        """Create the tick's run and clear the claim in one transaction; 1 if a run was made."""
        cron_id, tenant = row["cron_id"], row["tenant_id"]
        end = row.get("end_time")
        if end is not None and utcnow() > end:
            log.info("cron_tick_skipped cron_id=%s tick=%s reason=end_time_passed", cron_id, tick)
            await self.repo.release(cron_id, token)
            return 0
        payload = {**row["payload"], "metadata": {**row["metadata"], "cron_id": cron_id}}
        if row["thread_id"] is None:
            payload["on_completion"] = row["on_run_completed"] or "delete"
        try:
            prepared = await self.runs.prepare(tenant, row["thread_id"], payload,
                                               thread_metadata={"cron_id": cron_id})
            async with self.db.transaction() as tx:
                if not await self.repo.release(cron_id, token, tx=tx):
                    return 0  # taken over meanwhile: the new holder fires this tick
                run = await self.runs.write(tx, tenant, prepared, kind="")
        except StorageError as exc:
            # The claim stays: once stale, a scheduler takes it over and fires the tick.
            log.warning("cron_fire_deferred cron_id=%s tick=%s error=%s", cron_id, tick, exc)
            return 0
        except DockyardError as exc:
            log.warning("cron_tick_skipped cron_id=%s tick=%s code=%s reason=%s", cron_id, tick,
                        exc.code, exc.message)
            await self.repo.release(cron_id, token)
            return 0
        except Exception:
            log.exception("cron_tick_failed cron_id=%s tick=%s", cron_id, tick)
            await self.repo.release(cron_id, token)
            return 0
        self.runs.notify(others_told=True)
        await self.runs.announce(run)
        log.info("cron_fired cron_id=%s tick=%s run_id=%s thread_id=%s", cron_id, tick,
                 run["run_id"], run["thread_id"])
        return 1

    async def earliest_due(self) -> datetime | None:
        t = await self.repo.earliest()
        return datetime.fromisoformat(t) if t else None
