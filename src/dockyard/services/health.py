"""Dependency health (``/ok?check_db=1``): one round trip to each, with its latency.

Each check has a deadline, so a hung database answers "unhealthy" instead of hanging the probe.
Error messages are shown to whoever can reach ``/ok``; credentials in them are masked, and any
configured secret (a URL's password) is removed even where it is not in URL form.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from dockyard.logs import mask_secrets

CHECK_TIMEOUT_SECONDS = 2.0


def _passwords(urls: Iterable[str | None]) -> list[str]:
    out: list[str] = []
    for url in urls:
        if not url:
            continue
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            out.extend({password, unquote(password)})
    return out


def safe_message(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """What went wrong, without credentials."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
    text = mask_secrets(str(exc) or type(exc).__name__)
    for secret in secrets:
        if len(secret) >= 3:  # a one-letter "password" would mask half the message
            text = text.replace(secret, "***")
    return text


async def _check(probe: Callable[[], Awaitable[Any]], secrets: list[str]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        result = await asyncio.wait_for(probe(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        return {"ok": False, "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                "error": safe_message(exc, secrets)}
    ok = result is not False  # Storage.ping returns None; EventBus.ping returns a bool
    check: dict[str, Any] = {"ok": ok,
                             "latency_ms": round((time.perf_counter() - start) * 1000, 2)}
    if not ok:
        check["error"] = "ping failed"
    return check


async def check_dependencies(
    probes: dict[str, Callable[[], Awaitable[Any]]], secret_urls: Iterable[str | None] = ()
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run the probes concurrently: (all ok, {name: {"ok", "latency_ms", "error"?}})."""
    secrets = _passwords(secret_urls)
    names = list(probes)
    results = await asyncio.gather(*(_check(probes[n], secrets) for n in names))
    checks = dict(zip(names, results, strict=True))
    return all(c["ok"] for c in checks.values()), checks
