"""Assistants, threads, store and system routes, driven through langgraph-sdk as a user would."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError

pytestmark = pytest.mark.e2e


def _tag() -> str:
    """A value unique to one test, so searches on the shared server see only its own rows."""
    return uuid.uuid4().hex


# ---- assistants ---------------------------------------------------------------------------
async def test_default_assistant_per_graph(client: Any) -> None:
    for graph_id in ("three_steps", "nested", "memory"):
        expected = str(uuid.uuid5(uuid.NAMESPACE_URL, graph_id))
        by_id = await client.assistants.get(expected)
        by_graph = await client.assistants.get(graph_id)
        assert by_id == by_graph
        assert by_id["graph_id"] == graph_id
        assert by_id["metadata"]["created_by"] == "system"
    found = await client.assistants.search(metadata={"created_by": "system"}, limit=100)
    assert {a["graph_id"] for a in found} >= {"three_steps", "approval", "nested", "crashable"}
    assert len([a for a in found if a["graph_id"] == "three_steps"]) == 1


async def test_assistant_create_conflict_and_do_nothing(client: Any) -> None:
    aid = str(uuid.uuid4())
    a = await client.assistants.create("three_steps", assistant_id=aid, name="first",
                                       config={"configurable": {"k": 1}})
    assert a["assistant_id"] == aid and a["version"] == 1 and a["name"] == "first"
    with pytest.raises(ConflictError):
        await client.assistants.create("three_steps", assistant_id=aid, if_exists="raise")
    same = await client.assistants.create("three_steps", assistant_id=aid, name="other",
                                          if_exists="do_nothing")
    assert same["name"] == "first"
    with pytest.raises(NotFoundError):
        await client.assistants.create("no_such_graph")


async def test_assistant_update_versions_set_latest_delete(client: Any) -> None:
    tag = _tag()
    a = await client.assistants.create("three_steps", name="v", config={"configurable": {"n": 1}},
                                       metadata={"tag": tag})
    aid = a["assistant_id"]
    b = await client.assistants.update(aid, config={"configurable": {"n": 2}},
                                       metadata={"extra": True})
    assert b["version"] == 2 and b["config"] == {"configurable": {"n": 2}}
    assert b["metadata"] == {"tag": tag, "extra": True}
    got = await client.assistants.get(aid)
    assert got["version"] == 2 and got["config"]["configurable"]["n"] == 2

    versions = await client.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["config"] == {"configurable": {"n": 1}}
    only_first = await client.assistants.get_versions(aid, limit=1, offset=1)
    assert [v["version"] for v in only_first] == [1]
    with_extra = await client.assistants.get_versions(aid, metadata={"extra": True})
    assert [v["version"] for v in with_extra] == [2]

    back = await client.assistants.set_latest(aid, 1)
    assert back["version"] == 1 and back["config"] == {"configurable": {"n": 1}}
    assert (await client.assistants.get(aid))["config"] == {"configurable": {"n": 1}}
    # A run uses the version that is current now.
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], aid, input={"steps": []})
    assert run["assistant_version"] == 1
    await client.runs.join(thread["thread_id"], run["run_id"])
    with pytest.raises(NotFoundError):
        await client.assistants.set_latest(aid, 99)

    await client.assistants.delete(aid)
    with pytest.raises(NotFoundError):
        await client.assistants.get(aid)
    with pytest.raises(NotFoundError):
        await client.assistants.delete(aid)
    assert (await client.threads.get(thread["thread_id"]))["metadata"]["assistant_id"] == aid


async def test_assistant_delete_with_threads(client: Any) -> None:
    aid = (await client.assistants.create("three_steps"))["assistant_id"]
    used = (await client.threads.create())["thread_id"]
    other = (await client.threads.create())["thread_id"]
    await client.runs.wait(used, aid, input={"steps": []})
    await client.runs.wait(other, "three_steps", input={"steps": []})
    await client.assistants.delete(aid, delete_threads=True)
    with pytest.raises(NotFoundError):
        await client.threads.get(used)
    assert (await client.threads.get(other))["thread_id"] == other


async def test_assistant_search_and_count(client: Any) -> None:
    tag = _tag()
    made = []
    for i, graph in enumerate(("three_steps", "three_steps", "chat")):
        made.append(await client.assistants.create(
            graph, name=f"srch-{tag}-{i}", metadata={"tag": tag, "i": i}))
    assert await client.assistants.count(metadata={"tag": tag}) == 3
    assert await client.assistants.count(metadata={"tag": tag}, graph_id="chat") == 1
    assert await client.assistants.count(name=f"srch-{tag}-1") == 1
    # name matches as a case-insensitive substring
    assert await client.assistants.count(name=f"SRCH-{tag}".upper()) == 3

    by_graph = await client.assistants.search(metadata={"tag": tag}, graph_id="three_steps")
    assert {a["assistant_id"] for a in by_graph} == {m["assistant_id"] for m in made[:2]}
    by_meta = await client.assistants.search(metadata={"tag": tag, "i": 2})
    assert [a["assistant_id"] for a in by_meta] == [made[2]["assistant_id"]]

    asc = await client.assistants.search(metadata={"tag": tag}, sort_by="name", sort_order="asc")
    assert [a["name"] for a in asc] == [f"srch-{tag}-{i}" for i in range(3)]
    desc = await client.assistants.search(metadata={"tag": tag}, sort_by="name",
                                          sort_order="desc")
    assert [a["name"] for a in desc] == [f"srch-{tag}-{i}" for i in (2, 1, 0)]
    page = await client.assistants.search(metadata={"tag": tag}, sort_by="name",
                                          sort_order="asc", limit=1, offset=1,
                                          response_format="object")
    assert [a["name"] for a in page["assistants"]] == [f"srch-{tag}-1"]
    assert page["next"] == "2"
    last = await client.assistants.search(metadata={"tag": tag}, limit=5, offset=2,
                                          response_format="object")
    assert len(last["assistants"]) == 1 and last["next"] is None
    selected = await client.assistants.search(metadata={"tag": tag}, select=["assistant_id"])
    assert all(set(a) == {"assistant_id"} for a in selected)


async def test_assistant_schemas_graph_subgraphs(client: Any) -> None:
    schemas = await client.assistants.get_schemas("three_steps")
    assert schemas["graph_id"] == "three_steps"
    for key in ("input_schema", "output_schema", "state_schema", "config_schema",
                "context_schema"):
        assert key in schemas
    assert "steps" in schemas["state_schema"]["properties"]
    assert "steps" in schemas["input_schema"]["properties"]

    flat = await client.assistants.get_graph("nested")
    ids = {n["id"] for n in flat["nodes"]}
    assert {"outer", "child"} <= ids and not any("inner_1" in i for i in ids)
    xray = await client.assistants.get_graph("nested", xray=True)
    xids = {n["id"] for n in xray["nodes"]}
    assert any("inner_1" in i for i in xids) and any("inner_2" in i for i in xids)
    assert {(e["source"], e["target"]) for e in flat["edges"]} >= {("__start__", "outer")}

    subgraphs = await client.assistants.get_subgraphs("nested")
    assert list(subgraphs) == ["child"]
    assert "steps" in subgraphs["child"]["state_schema"]["properties"]
    assert await client.assistants.get_subgraphs("nested", namespace="child") == subgraphs
    assert await client.assistants.get_subgraphs("three_steps") == {}


# ---- threads --------------------------------------------------------------------------------
async def test_thread_crud(client: Any) -> None:
    tid = str(uuid.uuid4())
    t = await client.threads.create(thread_id=tid, metadata={"owner": "ann"})
    assert t["thread_id"] == tid and t["status"] == "idle" and t["metadata"] == {"owner": "ann"}
    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=tid)
    same = await client.threads.create(thread_id=tid, if_exists="do_nothing",
                                       metadata={"owner": "bob"})
    assert same["metadata"] == {"owner": "ann"}
    got = await client.threads.get(tid)
    assert got["thread_id"] == tid and got["values"] is None and got["interrupts"] == {}

    updated = await client.threads.update(tid, metadata={"team": "x"})
    assert updated["metadata"] == {"owner": "ann", "team": "x"}
    assert await client.threads.update(tid, metadata={"n": 1}, return_minimal=True) is None
    assert (await client.threads.get(tid))["metadata"] == {"owner": "ann", "team": "x", "n": 1}
    with_graph = await client.threads.create(graph_id="three_steps")
    assert with_graph["metadata"]["graph_id"] == "three_steps"

    await client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await client.threads.get(tid)
    with pytest.raises(NotFoundError):
        await client.threads.delete(tid)


async def test_thread_search_and_count(client: Any) -> None:
    tag = _tag()
    made = [await client.threads.create(metadata={"tag": tag, "i": i}) for i in range(3)]
    ids = [t["thread_id"] for t in made]
    await client.runs.wait(ids[0], "three_steps", input={"steps": [tag]})

    assert await client.threads.count(metadata={"tag": tag}) == 3
    found = await client.threads.search(metadata={"tag": tag, "i": 1})
    assert [t["thread_id"] for t in found] == [ids[1]]
    by_values = await client.threads.search(values={"steps": [tag, "a", "b", "c"]})
    assert [t["thread_id"] for t in by_values] == [ids[0]]
    assert await client.threads.count(values={"steps": [tag, "a", "b", "c"]}) == 1
    by_ids = await client.threads.search(ids=ids[1:])
    assert {t["thread_id"] for t in by_ids} == set(ids[1:])
    idle = await client.threads.search(metadata={"tag": tag}, status="idle")
    assert len(idle) == 3
    assert await client.threads.count(metadata={"tag": tag}, status="busy") == 0

    asc = await client.threads.search(metadata={"tag": tag}, sort_by="created_at",
                                      sort_order="asc")
    assert [t["thread_id"] for t in asc] == ids
    desc = await client.threads.search(metadata={"tag": tag}, sort_by="created_at",
                                       sort_order="desc")
    assert [t["thread_id"] for t in desc] == ids[::-1]
    await client.threads.update(ids[1], metadata={"touched": True})
    by_state = await client.threads.search(metadata={"tag": tag}, sort_by="state_updated_at",
                                           sort_order="desc")
    assert by_state[0]["thread_id"] == ids[1]
    page = await client.threads.search(metadata={"tag": tag}, sort_by="created_at",
                                       sort_order="asc", limit=1, offset=1)
    assert [t["thread_id"] for t in page] == [ids[1]]
    selected = await client.threads.search(metadata={"tag": tag}, select=["thread_id", "status"])
    assert all(set(t) == {"thread_id", "status"} for t in selected)
    extracted = await client.threads.search(ids=[ids[0]], extract={"last": "values.steps[-1]"})
    assert extracted[0]["extracted"] == {"last": "c"}


async def test_thread_status_transitions(client: Any) -> None:
    t = await client.threads.create()
    tid = t["thread_id"]
    assert t["status"] == "idle"
    run = await client.runs.create(tid, "slow", input={"delay": 0.5})
    assert (await client.threads.get(tid))["status"] == "busy"
    assert await client.threads.count(status="busy") >= 1
    await client.runs.join(tid, run["run_id"])
    assert (await client.threads.get(tid))["status"] == "idle"

    await client.runs.wait(tid, "approval", input={"steps": []})
    interrupted = await client.threads.get(tid)
    assert interrupted["status"] == "interrupted"
    assert interrupted["interrupts"]
    await client.runs.wait(tid, "approval", command={"resume": "yes"})
    done = await client.threads.get(tid)
    assert done["status"] == "idle" and done["values"]["steps"][-1] == "finish"

    failing = (await client.threads.create())["thread_id"]
    await client.runs.wait(failing, "failing", input={"steps": []}, raise_error=False)
    assert (await client.threads.get(failing))["status"] == "error"
    assert failing in {x["thread_id"] for x in await client.threads.search(status="error",
                                                                           limit=1000)}


async def test_thread_state_and_history(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    empty = await client.threads.get_state(tid)
    assert empty["values"] == {} and empty["next"] == []
    await client.runs.wait(tid, "three_steps", input={"steps": ["s"]})

    state = await client.threads.get_state(tid)
    assert state["values"] == {"steps": ["s", "a", "b", "c"]} and state["next"] == []
    assert state["checkpoint"]["thread_id"] == tid
    history = await client.threads.get_history(tid, limit=100)
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    assert [h["values"].get("steps") for h in history[:2]] == [["s", "a", "b", "c"],
                                                               ["s", "a", "b"]]
    assert len(await client.threads.get_history(tid, limit=2)) == 2
    older = await client.threads.get_history(tid, before=history[0]["checkpoint"], limit=100)
    assert older == history[1:]
    by_id = await client.threads.get_history(
        tid, before=history[0]["checkpoint"]["checkpoint_id"], limit=100)
    assert by_id == history[1:]
    inputs = await client.threads.get_history(tid, metadata={"source": "input"})
    assert len(inputs) == 1 and inputs[0]["metadata"]["source"] == "input"

    past = history[2]
    at_id = await client.threads.get_state(tid, checkpoint_id=past["checkpoint"]["checkpoint_id"])
    at_cp = await client.threads.get_state(tid, checkpoint=past["checkpoint"])
    assert at_id["values"] == at_cp["values"] == past["values"] == {"steps": ["s", "a"]}
    assert at_id["next"] == ["b"]
    selected = await client.threads.get_state(tid, checkpoint=past["checkpoint"],
                                              select=["values"])
    assert selected == {"values": {"steps": ["s", "a"]}}
    latest = await client.threads.get_state(tid, select=["values", "next"])
    assert latest == {"values": state["values"], "next": []}
    by_id_selected = await client.threads.get_state(
        tid, checkpoint_id=past["checkpoint"]["checkpoint_id"], select=["next"])
    assert by_id_selected == {"next": ["b"]}
    one_key = await client.threads.get_history(tid, limit=1, select=["values.steps", "next"])
    assert one_key == [{"values": {"steps": ["s", "a", "b", "c"]}, "next": []}]
    with pytest.raises(NotFoundError):
        await client.threads.get_state(tid, checkpoint_id=str(uuid.uuid4()))


async def test_update_state(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "three_steps", input={"steps": []})
    resp = await client.threads.update_state(tid, {"steps": ["manual"]}, as_node="c")
    assert resp["checkpoint"]["checkpoint_id"]
    state = await client.threads.get_state(tid)
    assert state["values"]["steps"] == ["a", "b", "c", "manual"]
    assert state["checkpoint"]["checkpoint_id"] == resp["checkpoint"]["checkpoint_id"]
    assert state["metadata"]["source"] == "update"
    assert (await client.threads.get(tid))["values"]["steps"][-1] == "manual"

    # Fork from an older checkpoint: the node after `a` is next.
    history = await client.threads.get_history(tid, limit=100)
    after_a = next(h for h in history if h["values"].get("steps") == ["a"])
    fork = await client.threads.update_state(tid, {"steps": ["fork"]}, as_node="a",
                                             checkpoint=after_a["checkpoint"])
    forked = await client.threads.get_state(tid, checkpoint=fork["checkpoint"])
    assert forked["values"]["steps"] == ["a", "fork"] and forked["next"] == ["b"]


async def test_thread_copy_and_prune(client: Any) -> None:
    tid = (await client.threads.create(metadata={"src": True}))["thread_id"]
    await client.runs.wait(tid, "three_steps", input={"steps": ["orig"]})
    copy = await client.threads.copy(tid)
    assert copy["thread_id"] != tid and copy["metadata"]["src"] is True
    original = await client.threads.get_state(tid)
    copied = await client.threads.get_state(copy["thread_id"])
    assert copied["values"] == original["values"]
    assert copied["checkpoint"]["thread_id"] == copy["thread_id"]
    assert len(await client.threads.get_history(copy["thread_id"], limit=100)) == len(
        await client.threads.get_history(tid, limit=100))
    # The copy is independent: running it again leaves the original alone.
    await client.runs.wait(copy["thread_id"], "three_steps", input={"steps": ["more"]})
    assert (await client.threads.get_state(tid))["values"] == original["values"]

    result = await client.threads.prune([tid], strategy="keep_latest")
    assert result == {"pruned_count": 1}
    assert len(await client.threads.get_history(tid, limit=100)) == 1
    assert (await client.threads.get_state(tid))["values"] == original["values"]

    gone = await client.threads.prune([copy["thread_id"], str(uuid.uuid4())])
    assert gone == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        await client.threads.get(copy["thread_id"])


# ---- store ------------------------------------------------------------------------------------
async def test_store_items(client: Any) -> None:
    ns = ["e2e-store", _tag()]
    await client.store.put_item(ns, "a", {"kind": "fruit", "n": 1})
    await client.store.put_item([*ns, "sub"], "b", {"kind": "veg", "n": 2})
    await client.store.put_item(ns, "c", {"kind": "fruit", "n": 3}, ttl=10)
    item = await client.store.get_item(ns, "a")
    assert item["namespace"] == ns and item["key"] == "a" and item["value"]["n"] == 1
    assert item["created_at"] and item["updated_at"]
    await client.store.put_item(ns, "a", {"kind": "fruit", "n": 10})
    assert (await client.store.get_item(ns, "a", refresh_ttl=True))["value"]["n"] == 10

    everything = await client.store.search_items(ns)
    assert {i["key"] for i in everything["items"]} == {"a", "b", "c"}
    fruit = await client.store.search_items(ns, filter={"kind": "fruit"})
    assert {i["key"] for i in fruit["items"]} == {"a", "c"}
    big = await client.store.search_items(ns, filter={"n": {"$gte": 3}})
    assert {i["key"] for i in big["items"]} == {"a", "c"}
    page1 = await client.store.search_items(ns, limit=2)
    page2 = await client.store.search_items(ns, limit=2, offset=2)
    assert len(page1["items"]) == 2 and len(page2["items"]) == 1
    assert {i["key"] for i in page1["items"] + page2["items"]} == {"a", "b", "c"}

    namespaces = await client.store.list_namespaces(prefix=ns)
    assert namespaces == {"namespaces": [ns, [*ns, "sub"]]}
    assert (await client.store.list_namespaces(suffix=["sub"], prefix=["e2e-store"]))[
        "namespaces"] == [[*ns, "sub"]]
    shallow = await client.store.list_namespaces(prefix=ns, max_depth=2)
    assert shallow["namespaces"] == [ns]

    await client.store.delete_item(ns, "a")
    assert await client.store.get_item(ns, "a") is None


async def test_graph_store_is_the_api_store(client: Any) -> None:
    tid = (await client.threads.create())["thread_id"]
    result = await client.runs.wait(tid, "memory", input={"steps": ["m1", "m2"]})
    assert result["steps"][-1] == "stored:2"
    item = await client.store.get_item(["memories", "e2e"], "last")
    assert item["value"] == {"steps": ["m1", "m2"]}
    found = await client.store.search_items(["memories"], filter={"steps": ["m1", "m2"]})
    assert [i["key"] for i in found["items"]] == ["last"]


# ---- system ---------------------------------------------------------------------------------
def test_system_routes(url: str) -> None:
    with httpx.Client(base_url=url) as http:
        assert http.get("/ok").json() == {"ok": True}
        info = http.get("/info").json()
        assert info["version"] and "three_steps" in info["graphs"]
        spec = http.get("/openapi.json").json()
        assert "/threads/{thread_id}/state" in spec["paths"]
        assert "/assistants/search" in spec["paths"]
        docs = http.get("/docs")
        assert docs.status_code == 200 and "html" in docs.headers["content-type"]
