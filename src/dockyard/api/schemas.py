"""Request bodies of the HTTP API. ``extra="forbid"``: a field we do not know is a 422.

Fields the reference server accepts but Dockyard does not implement are declared and then
refused with a clear message by ``reject_unsupported`` (never silently ignored).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)

from dockyard.errors import InvalidInput


def _json_integer(value: Any) -> Any:
    """A body's integer is a JSON number: pydantic's lax mode would also take ``true`` and
    ``"10"`` (found by the fuzzer: ``{"max_depth": true}`` was answered 200)."""
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


# An integer field of a request body.
Integer = Annotated[int, BeforeValidator(_json_integer)]
# Bounds that keep numbers inside what SQLite integers and datetimes can hold: an offset past
# 2**63 or a TTL of 1e308 minutes is a client mistake, answered with 422 rather than a crash.
Offset = Annotated[Integer, Field(ge=0, le=2**62)]
Limit = Annotated[Integer, Field(ge=0, le=1000)]
# Query parameters: FastAPI ignores a Field's bounds in Annotated when a Query() default is
# given (found by the fuzzer: limit=-8e25 reached the database), so the bounds go on Query.
LimitQuery = Annotated[int, Query(ge=0, le=1000)]
OffsetQuery = Annotated[int, Query(ge=0, le=2**62)]
Seconds = Annotated[float, Field(ge=0, le=10**9, allow_inf_nan=False)]
Minutes = Annotated[float, Field(gt=0, le=10**9, allow_inf_nan=False)]

AssistantField = Literal["assistant_id", "graph_id", "name", "description", "config", "context",
                         "created_at", "updated_at", "metadata", "version"]
ThreadField = Literal["thread_id", "created_at", "updated_at", "metadata", "config", "context",
                      "status", "values", "interrupts", "error"]
_STATE_FIELDS = ("values", "next", "tasks", "checkpoint", "metadata", "created_at",
                 "parent_checkpoint", "interrupts", "checkpoint_id", "parent_checkpoint_id")


def _state_fields(fields: list[str] | None) -> list[str] | None:
    for name in fields or ():
        if name not in _STATE_FIELDS and not (name.startswith("values.") and len(name) > 7):
            raise ValueError(f"unknown state field {name!r}; use one of {list(_STATE_FIELDS)} "
                             "or 'values.<key>'")
    return fields


StateSelect = Annotated[list[str] | None, AfterValidator(_state_fields)]


def _check_text(data: Any) -> None:
    """Refuse strings with unpaired UTF-16 surrogates (``"\\ud800"``): JSON allows the escape,
    but no UTF-8 encoder (orjson, SQLite) can store it."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ValueError("text contains an unpaired surrogate (invalid Unicode)") \
                        from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        _check_text(data)
        return data


class RunnableConfig(BaseModel):
    """An assistant's or a run's ``config``: the keys LangGraph reads are type-checked."""

    model_config = ConfigDict(extra="allow")

    tags: list[str] | None = None
    recursion_limit: Integer | None = Field(None, ge=1)
    configurable: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


def reject_unsupported(body: BaseModel, fields: dict[str, str]) -> None:
    for name, why in fields.items():
        value = getattr(body, name, None)
        if value not in (None, False, [], {}):
            raise InvalidInput(f"'{name}' is not supported: {why}", code="unsupported_field")


class AssistantCreate(Body):
    graph_id: str
    assistant_id: str | None = None
    config: RunnableConfig | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    name: str | None = None
    description: str | None = None


class AssistantPatch(Body):
    graph_id: str | None = None
    config: RunnableConfig | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantSearch(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[AssistantField] | None = None


class AssistantCount(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantVersions(Body):
    metadata: dict[str, Any] | None = None
    limit: Limit = 10
    offset: Offset = 0


class AssistantLatest(Body):
    version: Integer = Field(ge=1)


class ThreadCreate(Body):
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    supersteps: list[Any] | None = None
    ttl: Any = None


class ThreadPatch(Body):
    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl: Any = None


class ThreadSearch(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    ids: list[str] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: Literal["thread_id", "status", "created_at", "updated_at",
                     "state_updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[ThreadField] | None = None
    extract: dict[str, str] | None = None


class ThreadCount(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None


class ThreadPrune(Body):
    thread_ids: list[str]
    strategy: Literal["delete", "keep_latest"] = "delete"


class StateCheckpoint(Body):
    checkpoint: dict[str, Any]
    subgraphs: StrictBool = False
    select: StateSelect = None


class StateUpdate(Body):
    values: Any = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    as_node: str | None = None


class HistoryQuery(Body):
    limit: Integer = Field(10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    select: StateSelect = None


StreamModeT = str | list[str]


class RunCreate(Body):
    assistant_id: str
    input: Any = None
    command: dict[str, Any] | None = None
    config: RunnableConfig | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: StreamModeT | None = None
    stream_subgraphs: StrictBool | None = None
    stream_resumable: StrictBool | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    webhook: str | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint_during: StrictBool | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    after_seconds: Seconds | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    priority: Integer | None = Field(None, ge=-100, le=100)
    feedback_keys: list[str] | None = None
    langsmith_tracer: dict[str, Any] | None = None
    strict_resume: StrictBool | None = None

    def to_payload(self) -> dict[str, Any]:
        reject_unsupported(
            self,
            {
                "feedback_keys": "LangSmith feedback is not available in Dockyard",
                "langsmith_tracer": "LangSmith tracing is not configured in Dockyard",
                "strict_resume": "strict resume validation is not implemented",
            },
        )
        data = self.model_dump(exclude_none=True)
        during = data.pop("checkpoint_during", None)
        if during is not None and "durability" not in data:
            data["durability"] = "async" if during else "exit"
        return data


class RunCancelMany(Body):
    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: Literal["pending", "running", "all"] | None = None


class StorePut(Body):
    namespace: list[str]
    key: str = Field(min_length=1)
    value: dict[str, Any]
    index: Any = None
    ttl: Minutes | None = None


class StoreDelete(Body):
    namespace: list[str]
    key: str


class StoreSearch(Body):
    namespace_prefix: list[str] = Field(default_factory=list)
    filter: dict[str, Any] | None = None
    limit: Limit = 10
    offset: Offset = 0
    query: str | None = None
    refresh_ttl: StrictBool | None = None


class StoreNamespaces(Body):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: Integer | None = Field(None, ge=1)
    limit: Limit = 100
    offset: Offset = 0


# ---- crons ----------------------------------------------------------------------------------
CronField = Literal["cron_id", "assistant_id", "thread_id", "end_time", "schedule", "timezone",
                    "created_at", "updated_at", "user_id", "payload", "next_run_date",
                    "metadata", "now", "on_run_completed", "enabled"]
# The run fields a cron stores and passes to each run (services/crons.py RUN_FIELDS).
_CRON_RUN_FIELDS = ("input", "config", "context", "interrupt_before", "interrupt_after",
                    "webhook", "multitask_strategy", "stream_mode", "stream_subgraphs",
                    "stream_resumable", "durability")


class _CronFields(Body):
    """The fields a cron's create and patch share (all optional here)."""

    input: Any = None
    metadata: dict[str, Any] | None = None
    config: RunnableConfig | None = None
    context: dict[str, Any] | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    webhook: str | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    end_time: datetime | None = None
    enabled: StrictBool | None = None
    timezone: str | None = None
    stream_mode: StreamModeT | None = None
    stream_subgraphs: StrictBool | None = None
    stream_resumable: StrictBool | None = None
    durability: Literal["sync", "async", "exit"] | None = None


class CronCreate(_CronFields):
    assistant_id: str
    schedule: str
    checkpoint_during: StrictBool | None = None

    def run_payload(self) -> dict[str, Any]:
        """The run fields each tick's run is created with (``checkpoint_during`` is the
        deprecated spelling of ``durability``, mapped as for runs)."""
        data = self.model_dump(include={"assistant_id", *_CRON_RUN_FIELDS}, exclude_none=True)
        if self.checkpoint_during is not None and "durability" not in data:
            data["durability"] = "async" if self.checkpoint_during else "exit"
        return data


class CronPatch(_CronFields):
    """Fields left out are unchanged; a run field, ``metadata``, ``timezone`` or ``end_time``
    sent as null is reset (``end_time``: no end)."""

    schedule: str | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class CronSearch(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: StrictBool | None = None
    metadata: dict[str, Any] | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: Literal["cron_id", "assistant_id", "thread_id", "created_at", "updated_at",
                     "next_run_date", "end_time"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[CronField] | None = None


class CronCount(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: StrictBool | None = None
    metadata: dict[str, Any] | None = None
