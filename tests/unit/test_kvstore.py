"""DockyardStore through LangGraph's ``BaseStore`` API, held to the behaviour of LangGraph's own
``InMemoryStore``: the same operations must give the same answers from both. ``db`` is the
database DOCKYARD_TEST_DATABASE selects (tests/conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph.store.base import BaseStore, Item
from langgraph.store.memory import InMemoryStore

from dockyard.errors import InvalidInput
from dockyard.storage.base import Storage, utcnow
from dockyard.storage.kvstore import DockyardStore

ITEMS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("users", "ann", "memories"), "m1", {"text": "likes tea", "score": 5, "tags": ["a", "b"]}),
    (("users", "ann", "memories"), "m2", {"text": "likes jazz", "score": 2, "meta": {"k": 1}}),
    (("users", "ann", "prefs"), "p1", {"theme": "dark", "score": 9}),
    (("users", "bob", "memories"), "m1", {"text": "likes tea", "score": 7, "meta": {"k": 2}}),
    (("users", "bob"), "profile", {"name": "Bob", "active": True}),
    (("docs",), "d1", {"kind": "guide", "score": 3.5}),
    (("docs", "v2", "drafts"), "d2", {"kind": "draft", "active": False}),
]


@pytest.fixture
async def store(db: Storage) -> DockyardStore:
    s = DockyardStore(db)
    s.bind_loop(asyncio.get_running_loop())
    return s


async def _fill(*stores: BaseStore) -> None:
    for s in stores:
        for ns, key, value in ITEMS:
            await s.aput(ns, key, value)


def _keys(items: list[Any]) -> list[tuple[tuple[str, ...], str]]:
    return sorted((tuple(i.namespace), i.key) for i in items)


SEARCHES: list[dict[str, Any]] = [
    {"namespace_prefix": ()},
    {"namespace_prefix": ("users",)},
    {"namespace_prefix": ("users", "ann")},
    {"namespace_prefix": ("users", "an")},  # a prefix of labels, not of characters
    {"namespace_prefix": ("docs",)},
    {"namespace_prefix": ("nothing",)},
    {"namespace_prefix": ("users",), "filter": {"text": "likes tea"}},
    # Comparisons where every item has the field (InMemoryStore raises on a missing one).
    {"namespace_prefix": ("users", "ann"), "filter": {"score": {"$gt": 4}}},
    {"namespace_prefix": ("users", "ann"), "filter": {"score": {"$gte": 5, "$lt": 9}}},
    {"namespace_prefix": ("users", "ann"), "filter": {"score": {"$lte": 2}}},
    {"namespace_prefix": ("users", "ann"), "filter": {"score": {"$ne": 5}}},
    {"namespace_prefix": ("users", "ann"), "filter": {"score": {"$gt": 1.5, "$ne": 9}}},
    {"namespace_prefix": (), "filter": {"score": {"$eq": 3.5}}},
    {"namespace_prefix": (), "filter": {"tags": ["a", "b"]}},
    {"namespace_prefix": (), "filter": {"tags": ["b", "a"]}},
    {"namespace_prefix": (), "filter": {"meta": {"k": 2}}},
    {"namespace_prefix": (), "filter": {"active": True}},
    {"namespace_prefix": (), "filter": {"active": False}},
    {"namespace_prefix": (), "filter": {"kind": "guide", "score": 3.5}},
    {"namespace_prefix": (), "filter": {"missing": "x"}},
]


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: repr(s)[:60])
async def test_search_matches_inmemory_store(store: DockyardStore, search: dict[str, Any]) -> None:
    reference = InMemoryStore()
    await _fill(store, reference)
    ns = search["namespace_prefix"]
    kw = {"filter": search.get("filter"), "limit": 100}
    ours = await store.asearch(ns, **kw)
    theirs = await reference.asearch(ns, **kw)
    assert _keys(ours) == _keys(theirs)
    for item in ours:
        match = next(t for t in theirs if t.key == item.key and t.namespace == item.namespace)
        assert item.value == match.value


async def test_comparison_with_a_missing_field(store: DockyardStore) -> None:
    # As in the PostgreSQL store (JSONB): an item without the field does not match.
    await _fill(store)
    found = await store.asearch((), filter={"score": {"$gt": 4}}, limit=100)
    assert _keys(found) == [(("users", "ann", "memories"), "m1"), (("users", "ann", "prefs"), "p1"),
                            (("users", "bob", "memories"), "m1")]
    mixed = await store.asearch((), filter={"text": {"$gt": 4}}, limit=100)  # str vs int
    assert mixed == []


LISTINGS: list[dict[str, Any]] = [
    {},
    {"prefix": ("users",)},
    {"prefix": ("users", "*", "memories")},
    {"suffix": ("memories",)},
    {"suffix": ("*",)},
    {"prefix": ("users",), "suffix": ("prefs",)},
    {"max_depth": 1},
    {"max_depth": 2},
    {"prefix": ("users",), "max_depth": 2},
    {"prefix": ("docs", "v2", "drafts", "deeper")},
    {"limit": 2},
    {"limit": 2, "offset": 2},
    {"offset": 100},
]


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda s: repr(s))
async def test_list_namespaces_matches_inmemory_store(
    store: DockyardStore, listing: dict[str, Any]
) -> None:
    reference = InMemoryStore()
    await _fill(store, reference)
    assert await store.alist_namespaces(**listing) == await reference.alist_namespaces(**listing)


async def test_put_get_delete(store: DockyardStore) -> None:
    reference = InMemoryStore()
    for s in (store, reference):
        await s.aput(("a", "b"), "k", {"v": 1})
        first = await s.aget(("a", "b"), "k")
        assert isinstance(first, Item) and first.value == {"v": 1}
        await s.aput(("a", "b"), "k", {"v": 2})
        second = await s.aget(("a", "b"), "k")
        assert second is not None and second.value == {"v": 2}
        assert second.updated_at >= first.updated_at
        if s is store:  # as the PostgreSQL store: an update keeps created_at (InMemory resets it)
            assert second.created_at == first.created_at
        assert await s.aget(("a",), "k") is None
        assert await s.aget(("a", "b", "c"), "k") is None
        await s.adelete(("a", "b"), "k")
        assert await s.aget(("a", "b"), "k") is None
        await s.adelete(("a", "b"), "never-there")  # deleting nothing is fine


async def test_search_pages_newest_first(store: DockyardStore) -> None:
    for i in range(5):
        await store.aput(("page",), f"k{i}", {"i": i})
    await store.aput(("page",), "k1", {"i": 10})  # updated last: first in the results
    keys = [i.key for i in await store.asearch(("page",), limit=10)]
    assert keys[0] == "k1" and sorted(keys) == [f"k{i}" for i in range(5)]
    pages = [await store.asearch(("page",), limit=2, offset=o) for o in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i.key for p in pages for i in p] == keys
    assert await store.asearch(("page",), filter={"i": {"$in": [0, 10]}}) != []
    assert {i.key for i in await store.asearch(("page",), filter={"i": {"$nin": [0, 10]}})} == {
        "k2", "k3", "k4"}


async def test_unsupported_search(store: DockyardStore) -> None:
    await store.aput(("q",), "k", {"x": 1})
    with pytest.raises(InvalidInput, match="index"):
        await store.asearch(("q",), query="semantic please")
    with pytest.raises(InvalidInput, match="operator"):
        await store.asearch(("q",), filter={"x": {"$regex": "1"}})


async def test_namespace_prefixes_are_case_sensitive(store: DockyardStore) -> None:
    reference = InMemoryStore()
    for s in (store, reference):
        await s.aput(("Users", "x"), "k", {"v": 1})
        await s.aput(("users_", "x"), "k", {"v": 2})  # '_' is no wildcard either
        await s.aput(("users",), "k", {"v": 3})
    for prefix in [("users",), ("Users",), ("USERS",)]:
        assert _keys(await store.asearch(prefix)) == _keys(await reference.asearch(prefix)), prefix


async def test_namespaces_with_dots_are_refused(store: DockyardStore) -> None:
    # BaseStore validates namespaces: '.' would break the joined prefix column.
    with pytest.raises(ValueError):
        await store.aput(("a.b",), "k", {})
    with pytest.raises(ValueError):
        await store.aput((), "k", {})


async def _expire(db: Storage, key: str) -> None:
    """Backdate an item's expiry instead of waiting for it."""
    await db.execute("UPDATE store_items SET expires_at = ? WHERE key = ?",
                     ("2000-01-01T00:00:00+00:00", key))


async def test_ttl_expiry(store: DockyardStore, db: Storage) -> None:
    await store.aput(("t",), "short", {"v": 1}, ttl=5)
    await store.aput(("t",), "forever", {"v": 2})
    await store.aput(("t", "gone"), "only", {"v": 3}, ttl=5)
    row = await db.fetchone("SELECT expires_at, ttl_minutes FROM store_items WHERE key = 'short'")
    assert row is not None and row["ttl_minutes"] == 5 and row["expires_at"] > utcnow()
    assert (await db.fetchone("SELECT expires_at FROM store_items WHERE key = 'forever'") or {})[
        "expires_at"] is None

    await _expire(db, "short")
    await _expire(db, "only")
    assert await store.aget(("t",), "short") is None
    assert [i.key for i in await store.asearch(("t",))] == ["forever"]
    assert await store.alist_namespaces(prefix=("t",)) == [("t",)]
    assert await store.sweep_expired() == 2
    assert await db.fetchone("SELECT key FROM store_items WHERE key = 'short'") is None


async def test_ttl_refresh_on_read(store: DockyardStore, db: Storage) -> None:
    await store.aput(("r",), "k", {"v": 1}, ttl=5)
    soon = "2999-01-01T00:00:00+00:00"
    await db.execute("UPDATE store_items SET expires_at = ? WHERE key = 'k'", (soon,))

    async def expiry() -> str:
        return str((await db.fetchone("SELECT expires_at FROM store_items WHERE key = 'k'")
                    or {})["expires_at"])

    assert await store.aget(("r",), "k", refresh_ttl=False) is not None
    assert await expiry() == soon
    assert await store.aget(("r",), "k", refresh_ttl=True) is not None
    refreshed = await expiry()
    assert utcnow() < refreshed < soon  # back to now + 5 minutes
    await db.execute("UPDATE store_items SET expires_at = ? WHERE key = 'k'", (soon,))
    assert await store.asearch(("r",), refresh_ttl=True)
    assert await expiry() < soon


async def test_default_ttl_from_config(db: Storage) -> None:
    store = DockyardStore(db, ttl={"default_ttl": 10})
    await store.aput(("d",), "k", {"v": 1})
    row = await db.fetchone("SELECT ttl_minutes FROM store_items WHERE key = 'k'")
    assert row is not None and row["ttl_minutes"] == 10


async def test_tenants_are_separate(db: Storage) -> None:
    mine, theirs = DockyardStore(db, tenant="a"), DockyardStore(db, tenant="b")
    await mine.aput(("ns",), "k", {"owner": "a"})
    assert await theirs.aget(("ns",), "k") is None
    assert await theirs.asearch(()) == []
    assert await theirs.alist_namespaces() == []


async def test_sync_api_from_a_worker_thread(store: DockyardStore) -> None:
    """Sync graph nodes run in threads; their calls hop onto the store's loop."""

    def node() -> Any:
        store.put(("sync",), "k", {"v": 1})
        item = store.get(("sync",), "k")
        return item.value if item else None, [i.key for i in store.search(("sync",))]

    assert await asyncio.to_thread(node) == ({"v": 1}, ["k"])
    unbound = DockyardStore(store.items.db)
    with pytest.raises(RuntimeError, match="bind_loop"):
        unbound.put(("x",), "k", {})
