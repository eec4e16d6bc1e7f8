"""Deployments: which revision serves new threads, canaries, rollback, thread pins and the
revisions' environment variables.

Routing happens once per thread. A thread's first run picks a revision — the canary for
``canary_percent`` of thread ids (a hash, so the choice is stable and needs no state), else the
current revision, else the server's own project (``base``) — and the thread is pinned to it in
the transaction that writes the run. Every later run of the thread goes to the same revision,
so a thread that waits days at an interrupt resumes on the code it started on; only
``migrate_threads`` moves it. Changes are compare-and-set on the deployment row and appended to
``deployment_events`` in the same transaction; routing reads the row on every new thread, so a
rollback takes effect for the next thread created, on every API replica.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from dockyard.errors import Conflict, InvalidInput, NotFound
from dockyard.services.ids import new_id
from dockyard.storage.base import Storage
from dockyard.storage.deployments import Deployments
from dockyard.storage.revisions import Revisions

log = logging.getLogger("dockyard.deployments")

BASE = "base"  # a thread pinned to the server's own project
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ENV_VALUE_MAX = 32 * 1024
AUTO_ROLLBACK_KEYS = {"max_error_rate", "max_p95_seconds", "min_runs", "window_seconds"}
AUTO_ROLLBACK_DEFAULTS = {"min_runs": 10, "window_seconds": 300}


def in_canary(thread_id: str, percent: float) -> bool:
    """Whether a thread falls in a canary's share (stable per thread id, uniform over ids)."""
    bucket = int.from_bytes(hashlib.sha256(thread_id.encode()).digest()[:4], "big") % 10000
    return bucket < round(percent * 100)


def p95(durations: list[float]) -> float | None:
    if not durations:
        return None
    return durations[min(len(durations) - 1, math.ceil(0.95 * len(durations)) - 1)]


class DeploymentService:
    def __init__(self, db: Storage, *, base_graphs: list[str]) -> None:
        self.repo = Deployments(db)
        self.revisions = Revisions(db)
        self.base_graphs = set(base_graphs)

    # ---- routing (run creation) --------------------------------------------------------
    async def route(
        self, tenant: str, thread_id: str, pinned: str | None, graph_id: str, *,
        routing: tuple[dict[str, Any] | None] | None = None,
    ) -> tuple[str | None, str | None]:
        """``(revision of the run or None for the base, pin to write on the thread or None)``.

        ``routing``: the tenant's ``repo.routing`` row, in a tuple, if the caller read it."""
        if pinned:
            if pinned == BASE:
                return None, None
            row = await self.revisions.get(tenant, pinned)
            if row is None or graph_id not in row["graphs"]:
                raise Conflict(
                    f"thread {thread_id} is pinned to revision {pinned}, which has no graph "
                    f"{graph_id!r}; move it with `dockyard threads migrate`",
                    code="revision_mismatch")
            return pinned, None
        dep = routing[0] if routing is not None else await self.repo.routing(tenant)
        choice: str | None = None
        if dep is not None:
            if (dep["canary_revision_id"] and graph_id in (dep["canary_graphs"] or [])
                    and in_canary(thread_id, float(dep["canary_percent"]))):
                choice = dep["canary_revision_id"]
            elif dep["current_revision_id"] and graph_id in (dep["current_graphs"] or []):
                choice = dep["current_revision_id"]
        return choice, choice or BASE

    # ---- status ------------------------------------------------------------------------
    async def status(self, tenant: str) -> dict[str, Any]:
        dep = await self.repo.get(tenant) or {}
        return {
            "current_revision_id": dep.get("current_revision_id"),
            "canary_revision_id": dep.get("canary_revision_id"),
            "canary_percent": dep.get("canary_percent") or 0,
            "auto_rollback": dep.get("auto_rollback"),
            "updated_at": dep.get("updated_at"),
            "updated_by": dep.get("updated_by"),
            "events": await self.repo.events(tenant, limit=20),
        }

    async def stats(self, tenant: str, window_seconds: float = 3600) -> list[dict[str, Any]]:
        """Per serving revision (current, canary, base): runs ended in the window, error
        rate and p95 duration — the release console's figures and the canary's check."""
        dep = await self.repo.get(tenant) or {}
        since = (datetime.now(UTC) - timedelta(seconds=window_seconds)).isoformat()
        out = []
        seen: set[str | None] = set()
        for role, rev in (("current", dep.get("current_revision_id")),
                          ("canary", dep.get("canary_revision_id")), ("base", None)):
            if rev in seen or (role == "canary" and rev is None):
                continue
            seen.add(rev)
            s = await self.repo.revision_stats(tenant, rev, since)
            out.append({"role": role, "revision_id": rev, "runs": s["runs"],
                        "errors": s["errors"],
                        "error_rate": s["errors"] / s["runs"] if s["runs"] else None,
                        "p95_seconds": p95(s["durations"]), "window_seconds": window_seconds})
        return out

    # ---- changes -----------------------------------------------------------------------
    async def _ready(self, tenant: str, revision_id: str) -> dict[str, Any]:
        row = await self.revisions.get(tenant, revision_id)
        if row is None:
            raise NotFound(f"revision {revision_id!r} not found", code="revision_not_found")
        if row["status"] != "ready":
            raise Conflict(f"revision {revision_id} is {row['status']} and never serves: "
                           f"{row['error']}", code="revision_not_ready")
        unknown = sorted(set(row["graphs"]) - self.base_graphs)
        if unknown:
            # Assistants, schemas and state reads of a graph come from the server's project.
            raise InvalidInput(
                f"revision {revision_id} has graphs this server's project does not define: "
                f"{unknown}; add them to the server's project first (new graph ids cannot "
                "be introduced by a revision yet)", code="unknown_graphs")
        return row

    async def promote(
        self, tenant: str, revision_id: str, *, actor: str, canary_percent: float | None = None,
        auto_rollback: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Make a ready revision current (all new threads), or with ``canary_percent`` the
        canary (that share of new threads; ``auto_rollback`` thresholds watch it)."""
        await self._ready(tenant, revision_id)
        if canary_percent is not None and not 0 < canary_percent < 100:
            raise InvalidInput("canary_percent must be between 0 and 100 (exclusive); "
                               "promote without it to send all new threads")
        if auto_rollback is not None:
            auto_rollback = self._check_thresholds(auto_rollback)
            if canary_percent is None:
                raise InvalidInput("auto_rollback watches a canary: give canary_percent too")
        for _ in range(5):
            dep = await self.repo.get(tenant)
            version = None if dep is None else int(dep["version"])
            current = None if dep is None else dep["current_revision_id"]
            if canary_percent is None:
                if current == revision_id and not (dep or {}).get("canary_revision_id"):
                    return await self.status(tenant)  # already serving everything
                ok = await self.repo.change(
                    tenant, version,
                    {"id": new_id(), "action": "promote", "revision_id": revision_id,
                     "from_revision_id": current, "actor": actor},
                    current_revision_id=revision_id, canary_revision_id=None, canary_percent=0,
                    auto_rollback=None)
            else:
                if current == revision_id:
                    raise Conflict(f"revision {revision_id} is already current",
                                   code="already_current")
                ok = await self.repo.change(
                    tenant, version,
                    {"id": new_id(), "action": "canary", "revision_id": revision_id,
                     "from_revision_id": (dep or {}).get("canary_revision_id"), "actor": actor,
                     "reason": f"{canary_percent:g}% of new threads"},
                    canary_revision_id=revision_id, canary_percent=canary_percent,
                    auto_rollback=auto_rollback)
            if ok:
                log.info("deployment_changed tenant=%s action=%s revision_id=%s percent=%s",
                         tenant, "promote" if canary_percent is None else "canary",
                         revision_id, canary_percent)
                return await self.status(tenant)
        raise Conflict("the deployment changed concurrently; retry", code="deployment_busy")

    @staticmethod
    def _check_thresholds(raw: dict[str, Any]) -> dict[str, Any]:
        unknown = set(raw) - AUTO_ROLLBACK_KEYS
        if unknown:
            raise InvalidInput(f"unknown auto_rollback keys {sorted(unknown)}; "
                               f"known: {sorted(AUTO_ROLLBACK_KEYS)}")
        out = {**AUTO_ROLLBACK_DEFAULTS, **raw}
        for key, value in out.items():
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                      or value < 0):
                raise InvalidInput(f"auto_rollback.{key} must be a non-negative number")
        if out.get("max_error_rate") is None and out.get("max_p95_seconds") is None:
            raise InvalidInput("auto_rollback needs max_error_rate and/or max_p95_seconds")
        if out.get("max_error_rate") is not None and out["max_error_rate"] > 1:
            raise InvalidInput("auto_rollback.max_error_rate is a fraction between 0 and 1")
        return out

    async def rollback(
        self, tenant: str, *, actor: str, to: str | None = None, reason: str | None = None,
        expect_canary: str | None = None,
    ) -> dict[str, Any]:
        """Drop the canary if there is one; otherwise make the revision that was current
        before the current one (or ``to``; ``"base"`` for the server's project) current."""
        for _ in range(5):
            dep = await self.repo.get(tenant)
            if dep is None or (dep["current_revision_id"] is None
                               and dep["canary_revision_id"] is None and to is None):
                raise Conflict("nothing to roll back: no revision was promoted",
                               code="nothing_to_roll_back")
            version = int(dep["version"])
            canary = dep["canary_revision_id"]
            if expect_canary is not None and canary != expect_canary:
                return await self.status(tenant)  # someone acted on that canary already
            if canary and to is None:
                ok = await self.repo.change(
                    tenant, version,
                    {"id": new_id(), "action": "auto_rollback" if expect_canary else "rollback",
                     "revision_id": dep["current_revision_id"], "from_revision_id": canary,
                     "actor": actor, "reason": reason or "canary dropped"},
                    canary_revision_id=None, canary_percent=0, auto_rollback=None)
            else:
                current = dep["current_revision_id"]
                if to is None:
                    promoted = await self.repo.last_promotion_of(tenant, current)
                    target = promoted["from_revision_id"] if promoted else None
                elif to == BASE:
                    target = None
                else:
                    target = (await self._ready(tenant, to))["revision_id"]
                if target == current:
                    raise Conflict(f"revision {target or BASE} is already current",
                                   code="already_current")
                ok = await self.repo.change(
                    tenant, version,
                    {"id": new_id(), "action": "rollback", "revision_id": target,
                     "from_revision_id": current, "actor": actor, "reason": reason},
                    current_revision_id=target, canary_revision_id=None, canary_percent=0,
                    auto_rollback=None)
            if ok:
                log.info("deployment_rolled_back tenant=%s actor=%s reason=%s", tenant, actor,
                         reason)
                return await self.status(tenant)
        raise Conflict("the deployment changed concurrently; retry", code="deployment_busy")

    async def check_canaries(self) -> list[dict[str, Any]]:
        """Roll back every canary whose error rate or p95 over its window crosses its
        thresholds (every worker process runs this; compare-and-set makes one of them act)."""
        acted = []
        for dep in await self.repo.with_canary():
            limits = dep["auto_rollback"] or {}
            since = (datetime.now(UTC) - timedelta(
                seconds=float(limits.get("window_seconds") or 300))).isoformat()
            s = await self.repo.revision_stats(
                dep["tenant_id"], dep["canary_revision_id"], since,
                durations=limits.get("max_p95_seconds") is not None)
            if s["runs"] < int(limits.get("min_runs") or 1):
                continue
            rate = s["errors"] / s["runs"]
            slow = p95(s["durations"])
            reason = None
            if limits.get("max_error_rate") is not None and rate > limits["max_error_rate"]:
                reason = (f"error rate {rate:.0%} over {s['runs']} runs exceeds "
                          f"{limits['max_error_rate']:.0%}")
            elif (limits.get("max_p95_seconds") is not None and slow is not None
                  and slow > limits["max_p95_seconds"]):
                reason = f"p95 {slow:.2f}s over {s['runs']} runs exceeds {limits['max_p95_seconds']}s"
            if reason is None:
                continue
            log.warning("canary_auto_rollback tenant=%s revision_id=%s reason=%s",
                        dep["tenant_id"], dep["canary_revision_id"], reason)
            await self.rollback(dep["tenant_id"], actor="auto-rollback", reason=reason,
                                expect_canary=dep["canary_revision_id"])
            acted.append({"tenant_id": dep["tenant_id"],
                          "revision_id": dep["canary_revision_id"], "reason": reason})
        return acted

    # ---- thread migration --------------------------------------------------------------
    async def migrate_threads(
        self, tenant: str, *, to: str, thread_ids: list[str] | None = None,
        from_revision: str | None = None, dry_run: bool = False, limit: int = 1000,
    ) -> dict[str, Any]:
        """Move idle or interrupted threads to revision ``to`` (``"base"``: the server's
        project). A busy thread is skipped: its run finishes where it started."""
        if to == BASE:
            graphs = self.base_graphs
        else:
            graphs = set((await self._ready(tenant, to))["graphs"])
        if thread_ids:
            rows = await self.repo.threads_on(tenant, thread_ids)
            missing = set(thread_ids) - {r["thread_id"] for r in rows}
            if missing:
                raise NotFound(f"threads not found: {sorted(missing)}", code="thread_not_found")
        elif from_revision:
            rows = await self.repo.threads_of_revision(
                tenant, None if from_revision == BASE else from_revision, limit)
        else:
            raise InvalidInput("name the threads to migrate, or the revision to move them from")
        moved, skipped = [], []
        for row in rows:
            pinned = row["revision_id"] or BASE
            graph = (row["metadata"] or {}).get("graph_id")
            if pinned == to:
                skipped.append({"thread_id": row["thread_id"], "reason": "already there"})
            elif row["status"] == "busy":
                skipped.append({"thread_id": row["thread_id"], "reason": "busy (a run is active)"})
            elif graph is not None and graph not in graphs:
                skipped.append({"thread_id": row["thread_id"],
                                "reason": f"the target has no graph {graph!r}"})
            elif dry_run or await self.repo.pin(tenant, row["thread_id"], to,
                                                expected=row["revision_id"]):
                moved.append({"thread_id": row["thread_id"], "from": pinned})
            else:
                skipped.append({"thread_id": row["thread_id"], "reason": "changed meanwhile"})
        return {"to": to, "dry_run": dry_run, "moved": moved, "skipped": skipped}

    # ---- environment -------------------------------------------------------------------
    async def set_env(self, tenant: str, revision_id: str, values: dict[str, Any]) -> list[str]:
        """Set (a string) or delete (null) a revision's environment variables; returns the
        names set. Values never come back out of the API."""
        if await self.revisions.get(tenant, revision_id) is None:
            raise NotFound(f"revision {revision_id!r} not found", code="revision_not_found")
        if not values:
            raise InvalidInput("give at least one variable")
        for name, value in values.items():
            if not ENV_NAME.match(name):
                raise InvalidInput(f"invalid variable name {name!r}")
            if name.upper().startswith("DOCKYARD_"):
                raise InvalidInput(f"{name}: DOCKYARD_* variables configure the server, "
                                   "not a revision")
            if value is not None and (not isinstance(value, str) or len(value) > ENV_VALUE_MAX):
                raise InvalidInput(f"{name}: the value must be a string of at most "
                                   f"{ENV_VALUE_MAX} characters, or null to delete it")
        await self.repo.set_env(tenant, revision_id, values)
        return sorted(values)

    async def env_names(self, tenant: str, revision_id: str) -> list[dict[str, Any]]:
        if await self.revisions.get(tenant, revision_id) is None:
            raise NotFound(f"revision {revision_id!r} not found", code="revision_not_found")
        return await self.repo.env_names(tenant, revision_id)
