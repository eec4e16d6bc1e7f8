"""The checkpointer of the PostgreSQL dialect: langgraph's ``AsyncPostgresSaver`` on our pool,
storing a growing list once.

langgraph's saver does the SQL, with two changes made here.

**No saver-wide lock.** The parent serialises every call through one ``asyncio.Lock``, which is
needed when it shares a single connection but not when it draws from a pool: each call then
holds a connection of its own. With concurrent runs in one worker process that lock would queue
every checkpoint write behind every other, so ``_cursor`` takes it out.

**Appends are stored as appends.** A channel value is stored once per (channel, version), and the
parent stores it whole. A list that grows by one message a step (``add_messages``, ``operator.add``)
is then stored again at every step: quadratic bytes and serialisation. Here, when a list's new value
starts with *the very objects* of a value this process wrote or read for the same channel of the
same thread (an identity check, element by element), only the new tail is stored, in a row whose
``type`` is ``dydelta:<base version>:<root version>:<serde type>``: the root is the whole value the
chain starts from. A read fetches, in the same statement, the rows of the channel between the root
and the version (one range scan of the primary key, no recursion) and concatenates the chain's tails
in order. Anything else (a first write in this process, a removed or replaced element, a value that
is not a plain list) is stored whole, exactly as before; so is a chain that reaches ``MAX_CHAIN``
links, which bounds a read's walk. The rows stay in langgraph's table and format (only the ``type``
is ours), so copying a thread's rows copies its chains.

What identity cannot see: an element mutated in place after it was stored. Such a change is not
saved; LangGraph's reducers (and its own ``DeltaChannel``) assume state is not mutated in place.

**Fewer statements per run.** A step's writes ride in its checkpoint's statement; within
``hold_checkpoints`` (how the executor streams a run) the run's input checkpoint rides in its
first step's statement and its last checkpoint in the statement of the run's outcome.

Pruning keeps every base a kept value's chain reaches (``PostgresStorage.delete_checkpoints``).
Checked with langgraph-checkpoint-conformance in tests/unit/test_checkpointer.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from dockyard.errors import StorageError
from dockyard.storage.pg_arrays import BlobArray, IntArray, TextArray

log = logging.getLogger("dockyard.checkpoints")

DELTA_PREFIX = "dydelta:"  # dydelta:<base>:<root>:<serde type>, the tail's bytes in the row
REF_PREFIX = "dyref:"  # dyref:<base>:<root>:<checkpoint>:<task>:<idx>:<serde type>, no bytes
# Links before a list is stored whole again. A read fetches every link of the chain (the same
# bytes as one whole value, in more rows), so this only bounds the row count of one read.
MAX_CHAIN = 1000
# (thread, namespace, channel) keys whose last values this process remembers. A miss costs one
# whole value, never correctness.
CACHE_KEYS = 128
_ENTRIES_PER_KEY = 2
# The list writes this process inserted, by (thread, namespace, checkpoint): the last few
# checkpoints' and at most so many bytes.
WRITE_CACHE_KEYS = 256
WRITE_CACHE_BYTES = 16 << 20

SELECT_SQL = """
select
    thread_id,
    checkpoint,
    checkpoint_ns,
    checkpoint_id,
    parent_checkpoint_id,
    metadata,
    (
        select array_agg(array[bl.channel::bytea, bl.version::bytea, bl.type::bytea,
            case when starts_with(bl.type, 'dyref:') then (
                select w.blob from checkpoint_writes w
                where w.thread_id = bl.thread_id
                    and w.checkpoint_ns = bl.checkpoint_ns
                    and w.checkpoint_id = split_part(bl.type, ':', 4)
                    and w.task_id = split_part(bl.type, ':', 5)
                    and w.idx = split_part(bl.type, ':', 6)::integer
            ) else bl.blob end])
        from jsonb_each_text(checkpoint -> 'channel_versions') as cv
        inner join checkpoint_blobs head
            on head.thread_id = checkpoints.thread_id
            and head.checkpoint_ns = checkpoints.checkpoint_ns
            and head.channel = cv.key
            and head.version = cv.value
        inner join checkpoint_blobs bl
            on bl.thread_id = checkpoints.thread_id
            and bl.checkpoint_ns = checkpoints.checkpoint_ns
            and bl.channel = cv.key
            and (
                bl.version = cv.value
                or split_part(head.type, ':', 1) in ('dydelta', 'dyref')
                and bl.version between split_part(head.type, ':', 3) and cv.value
                and (bl.version = split_part(head.type, ':', 3)
                     or split_part(bl.type, ':', 3) = split_part(head.type, ':', 3))
            )
    ) as channel_values,
    (
        select
        array_agg(array[cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea, cw.blob, convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
        from checkpoint_writes cw
        where cw.thread_id = checkpoints.thread_id
            and cw.checkpoint_ns = checkpoints.checkpoint_ns
            and cw.checkpoint_id = checkpoints.checkpoint_id
    ) as pending_writes
from checkpoints """  # noqa: E501 (the pending-writes select is langgraph's, verbatim)


# One statement per checkpoint and one per task's writes, their rows as arrays: the parent sends
# a pipeline of one INSERT per row, whose client-side cost was a third of a worker's CPU.
_INSERT_BLOBS = """
    insert into checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    select %s, %s, x.channel, x.version, x.type, x.blob
    from unnest(%s::text[], %s::text[], %s::text[], %s::bytea[]) as x(channel, version, type, blob)
    on conflict (thread_id, checkpoint_ns, channel, version) do nothing
"""
_INSERT_CHECKPOINT = """
insert into checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
values (%s, %s, %s, %s, %s, %s)
on conflict (thread_id, checkpoint_ns, checkpoint_id)
do update set checkpoint = excluded.checkpoint, metadata = excluded.metadata
"""
PUT_CHECKPOINT_SQL = f"with blobs as ({_INSERT_BLOBS}){_INSERT_CHECKPOINT}"
# A held input checkpoint (see ``hold_checkpoints``), as the first CTEs of the statement it rides in.
HELD_CTES = f"held_blobs as ({_INSERT_BLOBS}), held as ({_INSERT_CHECKPOINT})"

# A step's writes and the checkpoint made from them, in one statement (``aput`` took them from
# ``aput_writes`` before they were sent). A blob that refers to one of these writes (``dyref``)
# does so only if this statement inserted the row; otherwise (the row was there already: the
# task ran twice) it stores its tail's bytes (``dydelta``), decided in the statement itself.
_STEP_CTES = """
w as (
    insert into checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
    select %s, %s, %s, x.task_id, x.task_path, x.idx, x.channel, x.type, x.blob
    from unnest(%s::text[], %s::text[], %s::integer[], %s::text[], %s::text[], %s::bytea[])
        as x(task_id, task_path, idx, channel, type, blob)
    on conflict (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) do nothing
    returning task_id, idx
), b as (
    select x.channel, x.version, x.type, x.blob, x.alt_type,
        exists (select 1 from w where w.task_id = x.ref_task and w.idx = x.ref_idx) as ref
    from unnest(%s::text[], %s::text[], %s::text[], %s::bytea[], %s::text[], %s::integer[], %s::text[])
        as x(channel, version, type, blob, ref_task, ref_idx, alt_type)
), blobs as (
    insert into checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
    select %s, %s, b.channel, b.version,
        case when b.ref or b.alt_type is null then b.type else b.alt_type end,
        case when b.ref then null else b.blob end
    from b
    on conflict (thread_id, checkpoint_ns, channel, version) do nothing
)"""  # noqa: E501
PUT_STEP_SQL = f"with {_STEP_CTES.strip()}\n{_INSERT_CHECKPOINT}"
# A held start step (see ``hold_checkpoints``): the same inserts as CTEs of other names, to
# ride in the statement of the run's next step (whose own are ``w``, ``b`` and ``blobs``).
HELD_STEP_CTES = re.sub(r"\bblobs\b", "held_step_blobs", re.sub(
    r"\bb\b", "held_b", re.sub(r"\bw\b", "held_w", _STEP_CTES.strip()))) \
    + f", held_step as ({_INSERT_CHECKPOINT})"
# The task of LangGraph's input step (its ``__start__`` node), as ``aput_writes`` names it.
START_TASK_PATH = "~__pregel_pull, __start__"

_PUT_WRITES_SQL = """
insert into checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
select %s, %s, %s, %s, %s, x.idx, x.channel, x.type, x.blob
from unnest(%s::integer[], %s::text[], %s::text[], %s::bytea[]) as x(idx, channel, type, blob)
on conflict (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) do """  # noqa: E501
# A task's special writes (error, interrupt, …) replace the previous ones; others stay first.
UPSERT_WRITES_SQL = _PUT_WRITES_SQL + (
    "update set channel = excluded.channel, type = excluded.type, blob = excluded.blob")
INSERT_WRITES_SQL = _PUT_WRITES_SQL + "nothing returning idx"


class _Write(NamedTuple):
    """A write this process inserted: what a tail with the same bytes may refer to."""

    channel: str
    type: str
    blob: bytes
    task_id: str
    idx: int

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> _Write:
        """The write of one ``_dump_writes`` row."""
        return cls(row[6], row[7], row[8], row[3], row[5])


class _Unsent:
    """A task's writes that ``aput_writes`` has not sent yet: the step's checkpoint, if its
    ``aput`` comes first, takes them into its own statement (``taken``) and settles ``done``
    (``False``: it failed, the writes are to be sent on their own)."""

    __slots__ = ("done", "params", "taken")

    def __init__(self, params: Sequence[tuple[Any, ...]], done: asyncio.Future[bool]) -> None:
        self.params, self.taken, self.done = params, False, done


class _Held(NamedTuple):
    """Checkpoints of a run's start not sent yet (``hold_checkpoints``): the input checkpoint,
    and maybe its start step's, as CTEs (``ctes``, of ``HELD_CTES`` and ``HELD_STEP_CTES``)
    with their parameters; the id of the last of them, and the list values they store, to
    remember once they are."""

    thread_id: str
    ns: str
    checkpoint_id: str
    ctes: str
    params: tuple[Any, ...]
    learnt: list[tuple[Any, ...]]


class _Last(NamedTuple):
    """A run's last checkpoint not sent yet (``hold_checkpoints``' ``is_last``): its statement,
    which also carries its step's writes and the thread's held input checkpoint, if any, and
    the list values they store, to remember once it is committed."""

    thread_id: str
    sql: str
    params: tuple[Any, ...]
    learnt: list[tuple[Any, ...]]


class Holding:
    """The checkpoints one run holds back (``PooledPostgresSaver.hold_checkpoints``).

    After the block, the run's last checkpoint, if it is still held, is the caller's: it goes
    into the statement of the run's outcome (``take``, then ``committed``), or alone
    (``flush``) before anything reads the thread.
    """

    def __init__(self, saver: PooledPostgresSaver, thread_id: str | None,
                 is_last: Callable[[Checkpoint], bool] | None, no_checkpoint: str | None,
                 start_is_internal: bool = False) -> None:
        self.saver, self.thread_id, self.is_last = saver, thread_id, is_last
        self.start_is_internal = start_is_internal
        self.inputs: dict[tuple[str, str], _Held] = {}  # by (thread, namespace)
        self.last: _Last | None = None
        # Threads known to have no root checkpoint yet: the first read of such a thread's
        # latest checkpoint needs no query (``no_checkpoint``).
        self.empty: set[str] = {no_checkpoint} if no_checkpoint else set()
        self._taken: _Last | None = None

    def sent(self, held: _Held) -> None:
        """Held input checkpoints are sent (or carried by the held last one)."""
        key = (held.thread_id, held.ns)
        if self.inputs.get(key) is held:
            del self.inputs[key]

    async def flush(self) -> None:
        """Send the held last checkpoint, if there is one (before a read of the thread)."""
        if (last := self.last) is not None:
            await self.saver._send(last.sql, last.params)
            self.last = None
            self.saver._learn(last.learnt)

    def take(self) -> tuple[str, tuple[Any, ...]] | None:
        """The held last checkpoint as a statement for ``Storage.execute_together`` (``?``
        placeholders), to commit with the run's outcome; ``committed`` once it is."""
        last, self.last = self.last, None
        if last is None:
            return None
        self._taken = last
        return _qmark(last.sql), last.params

    def committed(self) -> None:
        """The statement ``take`` gave was committed."""
        if (last := self._taken) is not None:
            self._taken = None
            self.saver._learn(last.learnt)


# The holding of the current run's stream, set by hold_checkpoints.
_HOLDING: ContextVar[Holding | None] = ContextVar("dockyard_holding", default=None)


@functools.cache
def _qmark(sql: str) -> str:
    """The saver's statement (``%s`` placeholders, no other ``%`` or ``?``) as storage's."""
    return sql.replace("%s", "?")


@functools.cache
def _with_held(sql: str, ctes: str) -> str:
    """``sql`` with held checkpoints' inserts (``ctes``) as its first CTEs (their parameters go
    first)."""
    body = sql.lstrip()
    if body.startswith("with "):
        return f"with {ctes}, {body[5:]}"
    return f"with {ctes} {body}"


def _carrying(sql: str, params: tuple[Any, ...],
              held: _Held | None) -> tuple[str, tuple[Any, ...]]:
    """``sql`` and ``params``, with ``held``'s inserts first if there is one."""
    if held is None:
        return sql, params
    return _with_held(sql, held.ctes), (*held.params, *params)


@functools.cache
def _alone(ctes: str) -> str:
    """Held inserts as a statement of their own (PostgreSQL runs every data-modifying CTE)."""
    return f"with {ctes} select 1"


class _Known(NamedTuple):
    """A list value stored under ``version``: its elements, its chain's length and the version
    of the whole value the chain starts from (``version`` itself when stored whole)."""

    version: str
    elements: tuple[Any, ...]
    depth: int
    root: str


def _starts_with(value: list[Any], elements: tuple[Any, ...]) -> bool:
    n = len(elements)
    return 0 < n <= len(value) and all(map(operator.is_, value[:n], elements))


class PooledPostgresSaver(AsyncPostgresSaver):
    SELECT_SQL = SELECT_SQL

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]]) -> None:
        super().__init__(pool)
        self.pool = pool
        self._known: OrderedDict[tuple[str, str, str], list[_Known]] = OrderedDict()
        self._writes: OrderedDict[tuple[str, str, str], list[_Write]] = OrderedDict()
        self._writes_bytes = 0
        # Writes on their way to the database, by checkpoint: the loop saves a step's writes
        # in the background, so the next checkpoint may come before they are known.
        self._inflight: dict[tuple[str, str, str], set[asyncio.Future[None]]] = {}
        # Writes not sent yet, which the step's checkpoint may take (see aput_writes).
        self._unsent: dict[tuple[str, str, str], list[_Unsent]] = {}
        # The objects each checkpoint's tasks wrote, by channel (kept alive, so ids stay theirs).
        self._written: OrderedDict[tuple[str, str, str], dict[str, list[Any]]] = OrderedDict()

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        # As the parent's pool branch, without the saver-wide lock: the connection is ours.
        async with self.pool.connection() as conn:
            if pipeline and self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif pipeline:
                async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    # --- what this process knows is stored ---------------------------------------------------

    def _remember(self, key: tuple[str, str, str], known: _Known) -> None:
        entries = [e for e in self._known.pop(key, []) if e.version != known.version]
        self._known[key] = [known, *entries][:_ENTRIES_PER_KEY]
        while len(self._known) > CACHE_KEYS:
            self._known.popitem(last=False)

    def _base_for(self, key: tuple[str, str, str], value: list[Any]) -> _Known | None:
        for known in self._known.get(key, ()):
            if known.depth < MAX_CHAIN and _starts_with(value, known.elements):
                return known
        return None

    # --- writes ------------------------------------------------------------------------------

    def _dump_value(
        self, key: tuple[str, str, str], version: str, value: Any, learnt: list[tuple[Any, ...]],
        writes: list[_Write], parent_id: str | None, written: dict[str, list[Any]],
        unsent: list[_Write],
    ) -> tuple[str, bytes | None, _Write | None, str | None]:
        """(type, blob, the unsent write a ``dyref`` type refers to, the ``dydelta`` type to
        store with ``blob`` instead if that write is not inserted by the step's statement)."""
        if type(value) is not list:
            return (*self.serde.dumps_typed(value), None, None)
        base = self._base_for(key, value)
        if base is not None and (objects := written.get(key[2])):
            # A task wrote an object that is already in the stored part (a message edited in
            # place and returned, which add_messages puts back where it was): its stored bytes
            # may be stale, so the value is stored whole.
            ids = {id(o) for o in objects}
            if any(id(x) in ids for x in value[:len(base.elements)]):
                base = None
        if base is None:
            learnt.append((key, _Known(version, tuple(value), 0, version)))
            return (*self.serde.dumps_typed(value), None, None)
        learnt.append((key, _Known(version, tuple(value), base.depth + 1, base.root)))
        inner, blob = self.serde.dumps_typed(value[len(base.elements):])
        delta = f"{DELTA_PREFIX}{base.version}:{base.root}:{inner}"
        for w in (*writes, *unsent):
            # The tail is, byte for byte, a write of the step that made it (a node returning
            # {"messages": [msg]}): the checkpoint refers to that row instead of a second copy.
            if w.channel == key[2] and w.type == inner and w.blob == blob:
                ref = (f"{REF_PREFIX}{base.version}:{base.root}:{parent_id}:{w.task_id}:"
                       f"{w.idx}:{inner}")
                if w in writes:
                    return ref, None, None, None
                return ref, blob, w, delta
        return delta, blob, None, None

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        # The parent's aput, with blobs dumped by _dump_value and on the loop (a tail is small;
        # the thread hop cost more than the serialisation).
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        checkpoint_ns = configurable["checkpoint_ns"]
        parent_id = configurable.get("checkpoint_id")
        copy = checkpoint.copy()
        values = copy["channel_values"] = copy["channel_values"].copy()
        blobs: dict[str, Any] = {}
        for k, v in checkpoint["channel_values"].items():
            if isinstance(v, _DeltaSnapshot):
                blobs[k] = values.pop(k)
                values[k] = True
            elif v is None or isinstance(v, (str, int, float, bool)):
                pass  # inline in the checkpoint's JSON
            else:
                blobs[k] = values.pop(k)
        learnt: list[tuple[Any, ...]] = []
        parent_key = (thread_id, checkpoint_ns, parent_id or "")
        saved: RunnableConfig = {"configurable": {
            "thread_id": thread_id, "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint["id"]}}
        holding = self._holding()
        if holding is not None:
            holding.empty.discard(thread_id)  # it has one now
            await self._flush_last(holding, thread_id)  # this statement goes after it
            if (metadata.get("source") == "input" and not checkpoint_ns
                    and (thread_id, checkpoint_ns) not in holding.inputs):
                # Held back: it rides in the run's next statement for this thread, as
                # HELD_CTES (PUT_CHECKPOINT_SQL's inserts, renamed): the same parameters.
                _, params = self._put_statement(config, checkpoint, metadata, new_versions,
                                                copy, blobs, learnt, parent_key, [], None)
                holding.inputs[(thread_id, checkpoint_ns)] = _Held(
                    thread_id, checkpoint_ns, checkpoint["id"], HELD_CTES, params, learnt)
                return saved
        if pending := self._inflight.get(parent_key):
            await asyncio.wait(list(pending))
        # The step's writes not sent yet go in this checkpoint's statement: one round trip.
        taken = self._unsent.pop(parent_key, [])
        for entry in taken:
            entry.taken = True
        held = holding.inputs.get((thread_id, checkpoint_ns)) if holding is not None else None
        start = kept = False
        is_last: Callable[[Checkpoint], bool] | None = None
        if (holding is not None and not checkpoint_ns and thread_id == holding.thread_id
                and metadata.get("source") == "loop"):
            # The input's start step ran only LangGraph's own __start__ task, no code of the
            # run: its checkpoint and writes join the held input checkpoint.
            start = (held is not None and holding.start_is_internal
                     and held.checkpoint_id == parent_id and bool(taken)
                     and all(p[4] == START_TASK_PATH for e in taken for p in e.params))
            is_last = holding.is_last
        try:
            sql, params = self._put_statement(config, checkpoint, metadata, new_versions, copy,
                                              blobs, learnt, parent_key, taken,
                                              None if start else held)
            if held is not None:
                learnt = [*held.learnt, *learnt]  # what the statement stores
            if start and holding is not None and held is not None:
                holding.inputs[(thread_id, checkpoint_ns)] = _Held(
                    thread_id, checkpoint_ns, checkpoint["id"], f"{held.ctes}, {HELD_STEP_CTES}",
                    (*held.params, *params), learnt)
            elif is_last is not None and is_last(checkpoint) and holding is not None:
                # The run's last checkpoint: no code of the run runs after it, so it waits for
                # the run's outcome and is committed with it (see hold_checkpoints).
                kept = True
                holding.last = _Last(thread_id, sql, params, learnt)
            else:
                await self._send(sql, params)
        except BaseException:
            for entry in taken:
                if not entry.done.done():
                    entry.done.set_result(False)  # not stored: aput_writes sends them itself
            raise
        if held is not None and holding is not None and not start:
            holding.sent(held)  # or carried by the last checkpoint
        for entry in taken:
            if not entry.done.done():
                entry.done.set_result(True)
        if not (start or kept):
            self._learn(learnt)  # only once stored may a value serve as a base
        # The step's writes are spent.
        self._written.pop(parent_key, None)
        self._drop_writes(parent_key)
        return saved

    def _checkpoint_rows(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions, copy: Checkpoint, blobs: dict[str, Any],
        learnt: list[tuple[Any, ...]], parent_key: tuple[str, str, str], taken: list[_Unsent],
    ) -> tuple[list[str], list[str], list[tuple[str, bytes | None, _Write | None, str | None]],
               tuple[Any, ...]]:
        """A checkpoint's new blobs (channels, versions, ``_dump_value`` of each) and its row."""
        thread_id, checkpoint_ns, parent_id = parent_key
        writes = self._writes.get(parent_key, [])
        written = self._written.get(parent_key, {})
        unsent = [_Write.of(p) for e in taken for p in e.params]
        channels = [k for k in new_versions if k in blobs]
        versions = [str(new_versions[k]) for k in channels]
        dumped = [self._dump_value((thread_id, checkpoint_ns, k), ver, blobs[k], learnt,
                                   writes, parent_id or None, written, unsent)
                  for k, ver in zip(channels, versions, strict=True)]
        head = (thread_id, checkpoint_ns, checkpoint["id"], parent_id or None, Jsonb(copy),
                Jsonb(get_serializable_checkpoint_metadata(config, metadata)))
        return channels, versions, dumped, head

    def _put_statement(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
        new_versions: ChannelVersions, copy: Checkpoint, blobs: dict[str, Any],
        learnt: list[tuple[Any, ...]], parent_key: tuple[str, str, str], taken: list[_Unsent],
        held: _Held | None,
    ) -> tuple[str, tuple[Any, ...]]:
        """The statement storing a checkpoint, with the writes ``taken`` and ``held``."""
        thread_id, checkpoint_ns, parent_id = parent_key
        channels, versions, dumped, head = self._checkpoint_rows(
            config, checkpoint, metadata, new_versions, copy, blobs, learnt, parent_key, taken)
        if not taken:
            return _carrying(PUT_CHECKPOINT_SQL, (
                thread_id, checkpoint_ns, TextArray(channels), TextArray(versions),
                TextArray([d[0] for d in dumped]), BlobArray([d[1] for d in dumped]), *head),
                held)
        rows = [p for e in taken for p in e.params]
        return _carrying(PUT_STEP_SQL, (
            thread_id, checkpoint_ns, parent_id,
            TextArray([p[3] for p in rows]), TextArray([p[4] for p in rows]),
            IntArray([p[5] for p in rows]), TextArray([p[6] for p in rows]),
            TextArray([p[7] for p in rows]), BlobArray([p[8] for p in rows]),
            TextArray(channels), TextArray(versions), TextArray([d[0] for d in dumped]),
            BlobArray([d[1] for d in dumped]),
            TextArray([d[2].task_id if d[2] else None for d in dumped]),
            IntArray([d[2].idx if d[2] else None for d in dumped]),
            TextArray([d[3] for d in dumped]),
            thread_id, checkpoint_ns, *head), held)

    async def _send(self, sql: str, params: tuple[Any, ...]) -> None:
        async with self._cursor() as cur:
            await cur.execute(sql, params)

    def _learn(self, learnt: list[tuple[Any, ...]]) -> None:
        """The statement that stored these list values committed: they may serve as bases."""
        for key, known in learnt:
            self._remember(key, known)

    # --- checkpoints held back ---------------------------------------------------------------

    @asynccontextmanager
    async def hold_checkpoints(
        self, *, thread_id: str | None = None, no_checkpoint: str | None = None,
        is_last: Callable[[Checkpoint], bool] | None = None, start_is_internal: bool = False,
    ) -> AsyncIterator[Holding]:
        """Within this block (one run's stream), two kinds of checkpoint are not sent at once.

        **A root input checkpoint** rides in the next statement the run sends for its thread
        (the first step's), which saves two round trips: its own, and its step's writes, which
        would otherwise go alone while it is on its way. Between the two, only the input's
        first task runs; a crash there leaves the run with no checkpoint of its own, so it
        starts again from its input, which is what resuming from the input checkpoint would do.
        A read of the thread sends it first, and so does the end of the block. With
        ``start_is_internal`` (the run's graph's ``__start__`` node is LangGraph's own: no
        conditional entry), the checkpoint of the input's start step on ``thread_id``, whose
        only task is that node, joins it: a crash before the first node's statement re-runs
        only that task.

        **The run's last checkpoint** (of ``thread_id``, at the root, made by the loop, and
        ``is_last``: no task of the run follows it) is kept, with its step's writes, for the
        statement of the run's outcome (the ``Holding`` the block yields: ``take``), which
        saves a round trip and a commit per run. No code of the run runs in between; a crash
        there loses the step with the outcome, and the run, claimed again, runs that step
        again, as after a crash while its checkpoint was on its way. A read of the thread, or
        another statement for it, sends it first; so does the end of the block after an error.

        ``no_checkpoint``: a thread the caller knows has no root checkpoint yet (the run's
        claim looked, and the run holds the thread): the first read of its latest checkpoint
        in the block, LangGraph's at the start of the run, is answered (None) without a query.
        """
        holding = Holding(self, thread_id, is_last, no_checkpoint, start_is_internal)
        token = _HOLDING.set(holding)
        failed = True
        try:
            yield holding
            failed = False
        finally:
            try:
                sends: list[Callable[[], Awaitable[None]]] = [
                    functools.partial(self._flush, held) for held in holding.inputs.values()]
                if failed:
                    sends.append(holding.flush)  # the last one, after the inputs
                for send in sends:
                    try:
                        await send()
                    except Exception:
                        if not failed:
                            raise
                        # The run failed anyway: the checkpoint is lost with it, as if the run
                        # had stopped before writing it.
                        log.warning("held_checkpoint_lost thread_id=%s", thread_id,
                                    exc_info=True)
            finally:
                _HOLDING.reset(token)

    def _holding(self) -> Holding | None:
        """The checkpoints this saver holds back in the current run (hold_checkpoints)."""
        holding = _HOLDING.get()
        return holding if holding is not None and holding.saver is self else None

    async def _flush(self, held: _Held) -> None:
        """Send a held input checkpoint."""
        await self._send(_alone(held.ctes), held.params)
        if (holding := self._holding()) is not None:
            holding.sent(held)
        self._learn(held.learnt)

    async def _flush_last(self, holding: Holding, thread_id: str) -> None:
        if holding.last is not None and holding.last.thread_id == thread_id:
            await holding.flush()

    async def _flush_thread(self, config: RunnableConfig | None) -> None:
        """Send the held checkpoints a read of ``config``'s thread (any: None) may see."""
        holding = self._holding()
        if holding is None:
            return
        thread_id = ((config or {}).get("configurable") or {}).get("thread_id")
        if holding.last is not None and (thread_id is None
                                         or str(thread_id) == holding.last.thread_id):
            await holding.flush()
        for (held_thread, _), held in list(holding.inputs.items()):
            if thread_id is None or str(thread_id) == held_thread:
                await self._flush(held)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config.get("configurable") or {}
        holding = self._holding()
        if (holding is not None and holding.empty
                and not configurable.get("checkpoint_ns") and not configurable.get("checkpoint_id")
                and str(configurable.get("thread_id")) in holding.empty):
            holding.empty.discard(str(configurable.get("thread_id")))
            return None  # known to have none: no query (hold_checkpoints' no_checkpoint)
        await self._flush_thread(config)
        return await super().aget_tuple(config)

    async def alist(
        self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None, limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        await self._flush_thread(config)
        async for item in super().alist(config, filter=filter, before=before, limit=limit):
            yield item

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        # The parent's, serialised on the loop, learning which list writes it inserted: a write
        # that was already there (the same task run twice, by a worker whose lease expired) holds
        # other bytes than ours, and must not stand for our tail.
        configurable = config["configurable"]
        thread_id, ns = configurable["thread_id"], configurable["checkpoint_ns"]
        checkpoint_id = configurable["checkpoint_id"]
        params = self._dump_writes(thread_id, ns, checkpoint_id, task_id, task_path, writes)
        key = (thread_id, ns, checkpoint_id)
        # Before the first await: the loop starts this before the next checkpoint's aput.
        by_channel = self._written.pop(key, {})
        for channel, v in writes:
            by_channel.setdefault(channel, []).extend(v if type(v) is list else [v])
        self._written[key] = by_channel
        while len(self._written) > WRITE_CACHE_KEYS:
            self._written.popitem(last=False)
        if all(w[0] in WRITES_IDX_MAP for w in writes):
            await self._put_writes(UPSERT_WRITES_SQL, params, thread_id, ns)
            return
        # The loop starts the step's checkpoint right after its last task's writes, in the same
        # turn of the event loop when nothing stands between them: wait that one turn, so the
        # checkpoint's aput can take these writes into its own statement (PUT_STEP_SQL) and the
        # step costs one round trip. Otherwise (a sibling task still running, an interrupt, a
        # checkpoint that waits for something else) they are sent here, a turn later.
        entry = _Unsent(params, asyncio.get_running_loop().create_future())
        self._unsent.setdefault(key, []).append(entry)
        try:
            await asyncio.sleep(0)
        finally:
            if not entry.taken:
                left = [e for e in self._unsent.pop(key, []) if e is not entry]
                if left:
                    self._unsent[key] = left
        if entry.taken and await entry.done:
            return
        lists = {p[5] for p, (_, v) in zip(params, writes, strict=True) if type(v) is list}
        if not lists:
            await self._put_writes(INSERT_WRITES_SQL, params, thread_id, ns)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight.setdefault(key, set()).add(done)
        try:
            inserted = await self._put_writes(INSERT_WRITES_SQL, params, thread_id, ns)
            if mine := [_Write.of(p) for p in params if p[5] in lists and p[5] in inserted]:
                self._writes[key] = [*self._drop_writes(key), *mine]
                self._writes_bytes += sum(len(w.blob) for w in self._writes[key])
                while self._writes and (len(self._writes) > WRITE_CACHE_KEYS
                                        or self._writes_bytes > WRITE_CACHE_BYTES):
                    self._drop_writes(next(iter(self._writes)))
        finally:
            done.set_result(None)
            waiting = self._inflight[key]
            waiting.discard(done)
            if not waiting:
                del self._inflight[key]

    def _drop_writes(self, key: tuple[str, str, str]) -> list[_Write]:
        """Forget the inserted writes of one checkpoint (keeping the byte count); they are
        returned."""
        gone = self._writes.pop(key, [])
        self._writes_bytes -= sum(len(w.blob) for w in gone)
        return gone

    async def _put_writes(self, sql: str, params: Sequence[tuple[Any, ...]], thread_id: str,
                          ns: str) -> set[int]:
        """Insert one task's writes (``_dump_writes`` rows) in one statement, with the thread's
        held input checkpoint if there is one; the indexes of the rows it inserted."""
        if not params:
            return set()
        first = params[0]
        holding = self._holding()
        held = None
        if holding is not None:
            await self._flush_last(holding, thread_id)  # this statement goes after it
            held = holding.inputs.get((thread_id, ns))
        async with self._cursor() as cur:
            await cur.execute(*_carrying(sql, (
                *first[:5], IntArray([p[5] for p in params]), TextArray([p[6] for p in params]),
                TextArray([p[7] for p in params]), BlobArray([p[8] for p in params])), held))
            inserted = {r["idx"] for r in await cur.fetchall()} if cur.description else set()
        if held is not None:
            if holding is not None:
                holding.sent(held)
            self._learn(held.learnt)
        return inserted

    # --- reads -------------------------------------------------------------------------------

    def _load_values(self, value: DictRow) -> dict[str, Any]:
        """The stored channel values of one ``SELECT_SQL`` row, chains concatenated.

        A chained channel comes with every row between its whole value and its version that
        shares that whole value (another branch's links too, after a fork): the walk from the
        version back along the bases picks the chain's."""
        rows: dict[str, dict[str, tuple[str, bytes]]] = {}  # blob: NULL only when "empty"
        for ch_b, v_b, t_b, blob in value["channel_values"] or ():
            rows.setdefault(ch_b.decode(), {})[v_b.decode()] = (t_b.decode(), blob)
        versions = value["checkpoint"].get("channel_versions") or {}
        out: dict[str, Any] = {}
        for channel, stored in rows.items():
            version = str(versions[channel])
            links: list[tuple[str, bytes]] = []
            type_, blob = stored[version]
            while type_.startswith((DELTA_PREFIX, REF_PREFIX)):
                if type_.startswith(REF_PREFIX):
                    _, base, _root, ckpt, task, idx, inner = type_.split(":", 6)
                    if blob is None:
                        raise StorageError(
                            f"checkpoint {value['checkpoint_id']}: the stored list of channel "
                            f"{channel!r} misses the write {ckpt}/{task}/{idx}"
                        )
                else:
                    _, base, _root, inner = type_.split(":", 3)
                links.append((inner, blob))
                if base not in stored:
                    raise StorageError(
                        f"checkpoint {value['checkpoint_id']}: the stored list of channel "
                        f"{channel!r} misses its base {base}"
                    )
                root = base
                type_, blob = stored[base]
            if type_ == "empty":
                continue
            loaded = self.serde.loads_typed((type_, blob))
            if links:
                for link in reversed(links):
                    loaded.extend(self.serde.loads_typed(link))
            else:
                root = version
            out[channel] = loaded
            if type(loaded) is list:
                self._remember((value["thread_id"], value["checkpoint_ns"], channel),
                               _Known(version, tuple(loaded), len(links), root))
        return out

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        # The parent's, with chains resolved, and writes decoded on the loop.
        thread_id, ns = value["thread_id"], value["checkpoint_ns"]
        parent_id = value["parent_checkpoint_id"]
        return CheckpointTuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                              "checkpoint_id": value["checkpoint_id"]}},
            cast(Checkpoint, {
                **value["checkpoint"],
                "channel_values": {
                    **(value["checkpoint"].get("channel_values") or {}),
                    **self._load_values(value),
                },
            }),
            value["metadata"],
            ({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                               "checkpoint_id": parent_id}} if parent_id else None),
            self._load_writes(value["pending_writes"]),
        )
