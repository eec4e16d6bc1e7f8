"""Turn LangGraph stream chunks into the SSE events of the Agent Server protocol.

Client stream modes map onto LangGraph modes: ``messages-tuple`` and ``messages`` both need
LangGraph's ``messages`` mode; ``events`` needs ``astream_events``. ``messages`` (not tuple)
is the older protocol that accumulates chunks per message id into ``messages/partial`` events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dockyard.errors import InvalidInput

CLIENT_MODES = {
    "values", "updates", "messages", "messages-tuple", "custom", "events", "debug", "tasks",
    "checkpoints",
}
UNSUPPORTED_MODES = {"tools", "lifecycle"}


def normalize_modes(stream_mode: str | list[str] | None) -> list[str]:
    if stream_mode is None:
        return ["values"]
    modes = [stream_mode] if isinstance(stream_mode, str) else list(stream_mode)
    if not modes:
        return ["values"]
    for mode in modes:
        if mode in UNSUPPORTED_MODES:
            raise InvalidInput(f"stream_mode {mode!r} is not supported by this server")
        if mode not in CLIENT_MODES:
            raise InvalidInput(
                f"Unknown stream_mode {mode!r}; use one of {sorted(CLIENT_MODES)}"
            )
    return list(dict.fromkeys(modes))


def langgraph_modes(client_modes: Iterable[str]) -> list[str]:
    out: list[str] = []
    for mode in client_modes:
        lg = "messages" if mode in ("messages", "messages-tuple") else mode
        if lg != "events" and lg not in out:
            out.append(lg)
    return out


class MessageAccumulator:
    """State for the legacy ``messages`` mode: one accumulated message per id.

    Like the reference server, ``messages/partial`` carries the whole message so far (as a
    message, not a chunk). A message ends with ``messages/complete``: at once when LangGraph
    emits a finished message, when its last chunk arrives (``chunk_position == "last"``), or
    at the end of the run (``flush``) for models that never mark their last chunk.
    """

    def __init__(self) -> None:
        self.messages: dict[str, Any] = {}
        self.completed: set[str] = set()
        self.namespaces: dict[str, tuple[str, ...]] = {}

    def feed(
        self, chunk: Any, metadata: dict[str, Any], namespace: tuple[str, ...] = ()
    ) -> list[tuple[str, Any]]:
        from langchain_core.messages import BaseMessageChunk, message_chunk_to_message

        events: list[tuple[str, Any]] = []
        msg_id = getattr(chunk, "id", None) or "unknown"
        if msg_id not in self.messages:
            self.namespaces[msg_id] = namespace
            events.append(("messages/metadata", {msg_id: {"metadata": metadata}}))
        if isinstance(chunk, BaseMessageChunk):
            prev = self.messages.get(msg_id)
            self.messages[msg_id] = chunk if prev is None else prev + chunk
            whole = message_chunk_to_message(self.messages[msg_id])
            events.append(("messages/partial", [whole]))
            if getattr(chunk, "chunk_position", None) == "last":
                self.completed.add(msg_id)
                events.append(("messages/complete", [whole]))
        elif msg_id not in self.completed:
            self.messages[msg_id] = chunk
            self.completed.add(msg_id)
            events.append(("messages/complete", [chunk]))
        return events

    def flush(self) -> list[tuple[tuple[str, ...], str, Any]]:
        """``messages/complete`` for every streamed message not completed yet, with its
        namespace."""
        from langchain_core.messages import message_chunk_to_message

        out: list[tuple[tuple[str, ...], str, Any]] = []
        for msg_id, msg in self.messages.items():
            if msg_id not in self.completed:
                self.completed.add(msg_id)
                out.append((self.namespaces.get(msg_id, ()), "messages/complete",
                            [message_chunk_to_message(msg)]))
        return out


def event_name(mode: str, namespace: tuple[str, ...] | None) -> str:
    return mode if not namespace else f"{mode}|{'|'.join(namespace)}"
