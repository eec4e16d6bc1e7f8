"""A2A (Agent2Agent, protocol 0.3 JSON-RPC binding): every assistant is an agent.

An A2A Task is a run on a thread: ``contextId`` ↔ thread, task ``id`` ↔ run id. Runs are made
by `RunService` like any other (queue, tenancy, assistant versions, multitask strategy apply).
Task states follow the run: pending → submitted, running → working, success → completed,
error/timeout → failed, interrupted → input-required when the run stopped at an ``interrupt()``
(the thread waits for an answer) and canceled otherwise. A message sent to a context whose
thread is interrupted resumes it (``Command(resume=…)``) instead of starting over.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from dockyard.errors import Conflict, NotFound
from dockyard.serde import json_dumps, json_loads
from dockyard.services.assistants import AssistantService
from dockyard.services.ids import is_uuid
from dockyard.services.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, RpcError
from dockyard.services.runs import RunService
from dockyard.services.threads import ThreadService

PROTOCOL_VERSION = "0.3.0"
TASK_NOT_FOUND = -32001
TASK_NOT_CANCELABLE = -32002
PUSH_NOT_SUPPORTED = -32003
UNSUPPORTED_OPERATION = -32004
CONTENT_TYPE_NOT_SUPPORTED = -32005

_STATES = {"pending": "submitted", "running": "working", "success": "completed",
           "error": "failed", "timeout": "failed"}
TERMINAL_STATES = ("completed", "failed", "canceled", "rejected")
_CONTEXT_NS = uuid.UUID("6f1c2d0e-5a41-4d7e-9d8c-a2a000000001")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _params_error(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"Invalid params: {message}")


def thread_of_context(context_id: str) -> str:
    """The thread of an A2A context: the id itself when it is a UUID (contexts Dockyard made
    are thread ids), else a stable UUID derived from it, so any client-chosen id works."""
    if is_uuid(context_id):
        return str(uuid.UUID(context_id))
    return str(uuid.uuid5(_CONTEXT_NS, context_id))


def output_text(values: Any) -> str:
    """The agent's answer as text: the last message's content for message-based graphs,
    else the output values as JSON."""
    if isinstance(values, dict):
        messages = values.get("messages")
        if isinstance(messages, list) and messages:
            last = messages[-1]
            content = last.get("content") if isinstance(last, dict) else None
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    b if isinstance(b, str) else str(b.get("text", ""))
                    for b in content if isinstance(b, str | dict)
                )
        values = {k: v for k, v in values.items() if k != "__interrupt__"}
    return json_dumps(values).decode()


class A2AService:
    def __init__(self, assistants: AssistantService, threads: ThreadService, runs: RunService) -> None:
        self.assistants = assistants
        self.threads = threads
        self.runs = runs

    # ---- agent card --------------------------------------------------------------------
    async def agent_card(self, tenant: str, assistant_id: str, base_url: str) -> dict[str, Any]:
        row = await self.assistants.resolve(tenant, assistant_id)
        description = row.get("description") or f"Dockyard agent '{row['graph_id']}'"
        return {
            "protocolVersion": PROTOCOL_VERSION,
            "name": row["name"] or row["graph_id"],
            "description": description,
            "url": f"{base_url.rstrip('/')}/a2a/{row['assistant_id']}",
            "preferredTransport": "JSONRPC",
            "version": str(row["version"]),
            "capabilities": {"streaming": True, "pushNotifications": False,
                             "stateTransitionHistory": False},
            "defaultInputModes": ["text/plain", "application/json"],
            "defaultOutputModes": ["text/plain", "application/json"],
            "skills": [{
                "id": f"{row['graph_id']}-main",
                "name": row["name"] or row["graph_id"],
                "description": description,
                "tags": ["assistant", row["graph_id"]],
                "inputModes": ["text/plain", "application/json"],
                "outputModes": ["text/plain", "application/json"],
            }],
        }

    # ---- dispatch ----------------------------------------------------------------------
    async def handle(self, tenant: str, assistant_id: str, method: str, params: dict[str, Any]) -> Any:
        """The ``result`` of a non-streaming method; raises `RpcError`."""
        match method:
            case "message/send":
                return await self.send(tenant, assistant_id, params)
            case "tasks/get":
                return await self.get_task(tenant, assistant_id, params)
            case "tasks/cancel":
                return await self.cancel_task(tenant, assistant_id, params)
            case "message/stream":
                raise RpcError(INTERNAL_ERROR, "message/stream is answered as a stream")
            case ("tasks/resubscribe" | "tasks/pushNotificationConfig/set"
                  | "tasks/pushNotificationConfig/get" | "tasks/pushNotificationConfig/list"
                  | "tasks/pushNotificationConfig/delete"):
                code = UNSUPPORTED_OPERATION if method == "tasks/resubscribe" else PUSH_NOT_SUPPORTED
                raise RpcError(code, f"{method} is not supported by this agent")
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")

    # ---- message/send, message/stream --------------------------------------------------
    async def start(self, tenant: str, assistant_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Validate a message and create its run; returns the run (``context_id`` added)."""
        message = params.get("message")
        if not isinstance(message, dict):
            raise _params_error("'message' must be an object")
        parts = message.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _params_error("'message.parts' must be a non-empty list")
        if message.get("role") not in ("user", "agent"):
            raise _params_error("'message.role' must be 'user' or 'agent'")
        if not isinstance(message.get("messageId"), str):
            raise _params_error("'message.messageId' must be a string")
        texts, data = _read_parts(parts)
        assistant = await self.assistants.resolve(tenant, assistant_id)

        context_id = message.get("contextId")
        task_id = message.get("taskId")
        if context_id is not None and (not isinstance(context_id, str) or not context_id):
            raise _params_error("'message.contextId' must be a non-empty string")
        if task_id is not None:
            prior = await self._task_row(tenant, assistant, task_id)
            prior_context = prior["metadata"].get("a2a_context_id") or prior["thread_id"]
            if context_id is not None and context_id != prior_context:
                raise _params_error(f"task '{task_id}' belongs to context '{prior_context}'")
            context_id = prior_context
        context_id = context_id or str(uuid.uuid4())
        thread_id = thread_of_context(context_id)

        payload: dict[str, Any] = {
            "assistant_id": assistant["assistant_id"],
            "if_not_exists": "create",
            "metadata": {"source": "a2a", "a2a_context_id": context_id,
                         "a2a_message_id": message["messageId"]},
        }
        thread = await self.threads.repo.get(tenant, thread_id)
        if thread is not None and thread["status"] == "interrupted" and thread["interrupts"]:
            payload["command"] = {"resume": data if data is not None else "\n".join(texts)}
        else:
            payload["input"] = await self._input(tenant, assistant["assistant_id"], texts, data)
        run = await self.runs.create(tenant, thread_id, payload)
        return {**run, "context_id": context_id}

    async def _input(
        self, tenant: str, assistant_id: str, texts: list[str], data: dict[str, Any] | None
    ) -> dict[str, Any]:
        schema = (await self.assistants.schemas(tenant, assistant_id)).get("input_schema") or {}
        if "messages" in (schema.get("properties") or {}) and texts:
            return {"messages": [{"role": "user", "content": "\n".join(texts)}]}
        if data is not None:
            return data
        try:
            parsed = json_loads("\n".join(texts).encode())
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise _params_error(
                "this agent's input is not a list of messages: send a data part (an object) "
                "or a text part holding a JSON object"
            )
        return parsed

    async def send(self, tenant: str, assistant_id: str, params: dict[str, Any]) -> dict[str, Any]:
        run = await self.start(tenant, assistant_id, params)
        config = params.get("configuration") or {}
        if isinstance(config, dict) and config.get("blocking") is False:
            return await self._task(tenant, await self.runs.queue.get(tenant, run["run_id"]) or run)
        values = await self.runs.result(tenant, run)
        row = await self.runs.queue.get(tenant, run["run_id"])
        return await self._task(tenant, row or run, values=values, have_values=True)

    async def stream(self, tenant: str, run: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The ``result`` objects of a message/stream answer: the task, ``working``, then the
        output artifact and the final status."""
        context_id = run["context_id"]
        yield {**await self._task(tenant, run), "kind": "task"}
        working = False
        async for _ev in self.runs.events(tenant, run, modes=["updates"]):
            if not working:
                working = True
                yield _status_update(run["run_id"], context_id, {"state": "working",
                                                                 "timestamp": _now()}, final=False)
        values = await self.runs.result(tenant, run)
        row = await self.runs.queue.get(tenant, run["run_id"]) or run
        task = await self._task(tenant, row, values=values, have_values=True)
        for artifact in task.get("artifacts") or []:
            yield {"kind": "artifact-update", "taskId": run["run_id"], "contextId": context_id,
                   "artifact": artifact, "append": False, "lastChunk": True}
        yield _status_update(run["run_id"], context_id, task["status"], final=True)

    # ---- tasks/get, tasks/cancel -------------------------------------------------------
    async def _task_row(self, tenant: str, assistant: dict[str, Any], task_id: Any) -> dict[str, Any]:
        if not isinstance(task_id, str) or not is_uuid(task_id):
            raise RpcError(TASK_NOT_FOUND, f"Task not found: {task_id!r}")
        row = await self.runs.queue.get(tenant, str(uuid.UUID(task_id)))
        if row is None or row["assistant_id"] != assistant["assistant_id"]:
            raise RpcError(TASK_NOT_FOUND, f"Task not found: {task_id}")
        return row

    async def get_task(self, tenant: str, assistant_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if "id" not in params:
            raise _params_error("'id' (the task id) is required")
        assistant = await self.assistants.resolve(tenant, assistant_id)
        row = await self._task_row(tenant, assistant, params["id"])
        return await self._task(tenant, row)

    async def cancel_task(self, tenant: str, assistant_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if "id" not in params:
            raise _params_error("'id' (the task id) is required")
        assistant = await self.assistants.resolve(tenant, assistant_id)
        row = await self._task_row(tenant, assistant, params["id"])
        try:
            await self.runs.cancel(tenant, row["thread_id"], row["run_id"], action="interrupt",
                                   wait=True)
        except Conflict as exc:
            raise RpcError(TASK_NOT_CANCELABLE, f"Task cannot be canceled: {exc.message}") from exc
        except NotFound as exc:
            raise RpcError(TASK_NOT_FOUND, f"Task not found: {params['id']}") from exc
        return await self._task(tenant, await self.runs.queue.get(tenant, row["run_id"]) or row)

    # ---- shapes ------------------------------------------------------------------------
    async def _task(
        self, tenant: str, row: dict[str, Any], *, values: Any = None, have_values: bool = False
    ) -> dict[str, Any]:
        """The A2A Task of a run."""
        context_id = (row.get("metadata") or {}).get("a2a_context_id") or row["thread_id"]
        state = _STATES.get(row["status"])
        thread = await self.threads.repo.get(tenant, row["thread_id"])
        if state is None:  # interrupted: at an interrupt() (waiting for input) or cancelled
            waiting = False
            if thread is not None and thread["status"] == "interrupted" and thread["interrupts"]:
                latest = await self.runs.queue.list_for_thread(
                    tenant, row["thread_id"], status=None, limit=1, offset=0)
                waiting = bool(latest) and latest[0]["run_id"] == row["run_id"]
            state = "input-required" if waiting else "canceled"
        status: dict[str, Any] = {"state": state, "timestamp": row.get("updated_at") or _now()}
        task: dict[str, Any] = {
            "kind": "task", "id": row["run_id"], "contextId": context_id, "status": status,
            "metadata": {"thread_id": row["thread_id"], "assistant_id": row["assistant_id"],
                         "run_status": row["status"]},
        }
        if state in ("completed", "failed", "input-required"):
            if not have_values and state != "input-required":
                values = await self.runs.result(tenant, row)
            if state == "completed":
                task["artifacts"] = [{
                    "artifactId": str(uuid.uuid5(_CONTEXT_NS, f"output:{row['run_id']}")),
                    "name": "output",
                    "parts": [{"kind": "text", "text": output_text(values)}],
                }]
            elif state == "failed":
                err = (values or {}).get("__error__") if isinstance(values, dict) else None
                text = (f"{err.get('error')}: {err.get('message')}" if isinstance(err, dict)
                        else str(row.get("error") or "The run failed"))
                status["message"] = _agent_message(context_id, row["run_id"],
                                                   [{"kind": "text", "text": text}])
            else:
                pending = [i.get("value") if isinstance(i, dict) else i
                           for items in (thread or {}).get("interrupts", {}).values()
                           for i in items]
                status["message"] = _agent_message(context_id, row["run_id"], [
                    {"kind": "text", "text": json_dumps(pending[0] if len(pending) == 1
                                                        else pending).decode()},
                    {"kind": "data", "data": {"interrupts": pending}},
                ])
        return task


def _read_parts(parts: list[Any]) -> tuple[list[str], dict[str, Any] | None]:
    texts: list[str] = []
    data: dict[str, Any] | None = None
    for part in parts:
        if not isinstance(part, dict):
            raise _params_error("each part must be an object")
        kind = part.get("kind")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _params_error("a text part needs a string 'text'")
            texts.append(part["text"])
        elif kind == "data":
            if not isinstance(part.get("data"), dict):
                raise _params_error("a data part needs an object 'data'")
            data = {**(data or {}), **part["data"]}
        elif kind == "file":
            raise RpcError(CONTENT_TYPE_NOT_SUPPORTED, "File parts are not supported by this agent")
        else:
            raise _params_error(f"unknown part kind {kind!r} (use 'text' or 'data')")
    return texts, data


def _agent_message(context_id: str, task_id: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "message", "role": "agent", "messageId": str(uuid.uuid4()), "parts": parts,
            "contextId": context_id, "taskId": task_id}


def _status_update(task_id: str, context_id: str, status: dict[str, Any], *, final: bool) -> dict[str, Any]:
    return {"kind": "status-update", "taskId": task_id, "contextId": context_id,
            "status": status, "final": final}
