"""Signing and verifying Dockyard's outgoing webhooks (public API for receivers).

Every webhook POST carries::

    Dockyard-Webhook-Id: <delivery id, the same on every retry of one delivery>
    Dockyard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + raw body)>

A receiver recomputes the HMAC over the *raw* request body (before any JSON parsing), compares
it in constant time, and refuses timestamps older than a tolerance (5 minutes by default), so a
captured request cannot be replayed later. Deduplicate on ``Dockyard-Webhook-Id``: a delivery
that timed out on Dockyard's side may arrive twice.

This module depends on the standard library only; copying :func:`verify_signature` into a
receiver that does not install Dockyard is fine.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Dockyard-Signature"
ID_HEADER = "Dockyard-Webhook-Id"
ATTEMPT_HEADER = "Dockyard-Webhook-Attempt"
DEFAULT_TOLERANCE_SECONDS = 300

__all__ = [
    "ATTEMPT_HEADER",
    "DEFAULT_TOLERANCE_SECONDS",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "InvalidSignature",
    "compute_signature",
    "sign",
    "verify_signature",
]


class InvalidSignature(ValueError):
    """The signature header is missing, malformed, stale or does not match the body."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def compute_signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}."`` followed by the raw body."""
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Dockyard-Signature`` header value for ``body``, signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={compute_signature(secret, t, body)}"


def verify_signature(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Check a ``Dockyard-Signature`` header against the raw ``body``; return its timestamp.

    Raises :class:`InvalidSignature` (a ``ValueError``) saying why otherwise. Several ``v1=``
    entries are accepted (any one matching is enough), so a sender may sign with an old and a
    new secret while rotating.
    """
    if not header:
        raise InvalidSignature(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature("malformed timestamp in signature header") from None
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature("signature header must look like t=<unix>,v1=<hex>")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(f"timestamp outside the {tolerance:g}s tolerance (replayed?)")
    expected = compute_signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("signature does not match the body")
    return timestamp
