"""Identifier rules shared by the services."""

from __future__ import annotations

import uuid

from dockyard.errors import InvalidInput

# The reference server derives each graph's default assistant id as uuid5(NAMESPACE_URL,
# graph_id); using the same rule keeps ids stable across servers and restarts.
DEFAULT_ASSISTANT_NAMESPACE = uuid.NAMESPACE_URL


def default_assistant_id(graph_id: str, tenant: str = "default") -> str:
    """The default tenant keeps the reference server's ids; every other tenant gets its own
    default assistants (assistant ids are unique across tenants)."""
    if tenant == "default":
        return str(uuid.uuid5(DEFAULT_ASSISTANT_NAMESPACE, graph_id))
    return str(uuid.uuid5(DEFAULT_ASSISTANT_NAMESPACE, f"dockyard:tenant:{tenant}:graph:{graph_id}"))


def check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"Invalid {what}: {value!r} is not a UUID") from None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError):
        return False
    return True


def new_id() -> str:
    """Time-ordered UUIDv7-like id: sorts by creation, which run/checkpoint ordering relies on."""
    import os
    import time

    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64
    value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))
