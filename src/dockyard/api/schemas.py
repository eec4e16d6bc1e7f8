"""Request bodies of the HTTP API. ``extra="forbid"``: a field we do not know is a 422.

Fields the reference server accepts but Dockyard does not implement are declared and then
refused with a clear message by ``reject_unsupported`` (never silently ignored).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dockyard.errors import InvalidInput


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def reject_unsupported(body: BaseModel, fields: dict[str, str]) -> None:
    for name, why in fields.items():
        value = getattr(body, name, None)
        if value not in (None, False, [], {}):
            raise InvalidInput(f"'{name}' is not supported: {why}", code="unsupported_field")


class AssistantCreate(Body):
    graph_id: str
    assistant_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    name: str | None = None
    description: str | None = None


class AssistantPatch(Body):
    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantSearch(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(10, ge=0, le=1000)
    offset: int = Field(0, ge=0)
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


class AssistantCount(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantVersions(Body):
    metadata: dict[str, Any] | None = None
    limit: int = Field(10, ge=0, le=1000)
    offset: int = Field(0, ge=0)


class AssistantLatest(Body):
    version: int = Field(ge=1)


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
    limit: int = Field(10, ge=0, le=1000)
    offset: int = Field(0, ge=0)
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None
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
    subgraphs: bool = False
    select: list[str] | None = None


class StateUpdate(Body):
    values: Any = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None
    as_node: str | None = None


class HistoryQuery(Body):
    limit: int = Field(10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    select: list[str] | None = None


StreamModeT = str | list[str]


class RunCreate(Body):
    assistant_id: str
    input: Any = None
    command: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: StreamModeT | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    webhook: str | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint_during: bool | None = None
    multitask_strategy: Literal["reject", "interrupt", "rollback", "enqueue"] | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    after_seconds: float | None = Field(None, ge=0)
    durability: Literal["sync", "async", "exit"] | None = None
    feedback_keys: list[str] | None = None
    langsmith_tracer: dict[str, Any] | None = None
    strict_resume: bool | None = None

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
    ttl: float | None = None


class StoreDelete(Body):
    namespace: list[str]
    key: str


class StoreSearch(Body):
    namespace_prefix: list[str] = Field(default_factory=list)
    filter: dict[str, Any] | None = None
    limit: int = Field(10, ge=0, le=1000)
    offset: int = Field(0, ge=0)
    query: str | None = None
    refresh_ttl: bool | None = None


class StoreNamespaces(Body):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = Field(None, ge=1)
    limit: int = Field(100, ge=0, le=1000)
    offset: int = Field(0, ge=0)
