"""Long-term memory: a LangGraph ``BaseStore`` over Dockyard's ``store_items`` table.

Graphs (``store.aput`` in a node) and the HTTP ``/store`` API read and write the same rows,
scoped by tenant. Semantic search (``query``) needs an embedding index, which this build does
not configure: a query is refused rather than silently ignored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from dockyard.errors import InvalidInput
from dockyard.storage.base import Storage, utcnow
from dockyard.storage.resources import StoreItems


def _expiry(ttl_minutes: float | None) -> str | None:
    if ttl_minutes is None:
        return None
    return (datetime.now(UTC) + timedelta(minutes=ttl_minutes)).isoformat()


_OPS = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a not in b,
}


def matches(value: dict[str, Any], filt: dict[str, Any] | None) -> bool:
    """Filter semantics of the store API: key equality, or ``{"$op": operand}`` comparisons."""
    for key, cond in (filt or {}).items():
        actual = value.get(key) if isinstance(value, dict) else None
        if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            for op, operand in cond.items():
                fn = _OPS.get(op)
                if fn is None:
                    raise InvalidInput(f"Unsupported filter operator {op!r}")
                try:
                    if not fn(actual, operand):
                        return False
                except TypeError:
                    return False
        elif isinstance(cond, dict) and isinstance(actual, dict):
            if not matches(actual, cond):
                return False
        elif actual != cond:
            return False
    return True


def _to_item(row: dict[str, Any], cls: type[Item] = Item) -> Item:
    return cls(
        value=row["value"],
        key=row["key"],
        namespace=tuple(row["prefix"].split(".")) if row["prefix"] else (),
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


class DockyardStore(BaseStore):
    supports_ttl = True

    def __init__(
        self, db: Storage, *, tenant: str = "default", ttl: TTLConfig | None = None
    ) -> None:
        self.items = StoreItems(db)
        self.tenant = tenant
        self.ttl_config = ttl
        self._loop: asyncio.AbstractEventLoop | None = None
        self._views: dict[str, DockyardStore] = {tenant: self}

    def for_tenant(self, tenant: str) -> DockyardStore:
        """The same store seen by ``tenant``: graphs and the /store API of a tenant see only
        its items."""
        view = self._views.get(tenant)
        if view is None:
            view = DockyardStore.__new__(DockyardStore)
            view.items, view.tenant, view.ttl_config = self.items, tenant, self.ttl_config
            view._loop, view._views = self._loop, self._views
            self._views[tenant] = view
        return view

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sync graph nodes run in worker threads; their store calls hop onto this loop."""
        self._loop = loop
        for view in self._views.values():
            view._loop = loop

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        if self._loop is None:
            raise RuntimeError("DockyardStore.batch needs bind_loop() before sync use")
        return asyncio.run_coroutine_threadsafe(self.abatch(ops), self._loop).result()

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        results: list[Result] = []
        for op in ops:
            if isinstance(op, GetOp):
                results.append(await self._get(op))
            elif isinstance(op, PutOp):
                await self._put(op)
                results.append(None)
            elif isinstance(op, SearchOp):
                results.append(await self._search(op))
            elif isinstance(op, ListNamespacesOp):
                results.append(await self._list(op))
            else:  # pragma: no cover - BaseStore defines no other op
                raise InvalidInput(f"Unknown store operation {type(op).__name__}")
        return results

    async def _get(self, op: GetOp) -> Item | None:
        prefix = ".".join(op.namespace)
        row = await self.items.get(self.tenant, prefix, op.key, utcnow())
        if row is None:
            return None
        if op.refresh_ttl and row["ttl_minutes"] is not None:
            await self.items.touch(self.tenant, prefix, op.key, _expiry(row["ttl_minutes"]) or "")
        return _to_item(row)

    async def _put(self, op: PutOp) -> None:
        prefix = ".".join(op.namespace)
        if op.value is None:
            await self.items.delete(self.tenant, prefix, op.key)
            return
        ttl = op.ttl
        if ttl is None and self.ttl_config:
            ttl = self.ttl_config.get("default_ttl")
        await self.items.put(self.tenant, prefix, op.key, dict(op.value), ttl, _expiry(ttl))

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        if op.query:
            raise InvalidInput(
                "Semantic search ('query') needs a store index (store.index in the config); "
                "none is configured"
            )
        rows = await self.items.under(self.tenant, ".".join(op.namespace_prefix), utcnow())
        hits = [r for r in rows if matches(r["value"], op.filter)]
        page = hits[op.offset : op.offset + op.limit]
        if op.refresh_ttl:
            for r in page:
                if r["ttl_minutes"] is not None:
                    await self.items.touch(
                        self.tenant, r["prefix"], r["key"], _expiry(r["ttl_minutes"]) or ""
                    )
        return [_to_item(r, SearchItem) for r in page]  # type: ignore[misc]

    async def _list(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        namespaces = [tuple(p.split(".")) for p in await self.items.prefixes(self.tenant, utcnow())]
        out: list[tuple[str, ...]] = []
        for ns in namespaces:
            if not all(_match(cond, ns) for cond in op.match_conditions or ()):
                continue
            if op.max_depth is not None:
                ns = ns[: op.max_depth]
            if ns not in out:
                out.append(ns)
        out.sort()
        return out[op.offset : op.offset + op.limit]

    async def sweep_expired(self) -> int:
        return await self.items.sweep(utcnow())


def _match(cond: Any, ns: tuple[str, ...]) -> bool:
    path = tuple(cond.path)
    if len(path) > len(ns):
        return False
    part = ns[: len(path)] if cond.match_type == "prefix" else ns[-len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part, strict=True))
