"""Run-completion webhooks: URL policy (SSRF guard) and delivery with retries."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from dockyard.errors import InvalidInput
from dockyard.serde import json_dumps

log = logging.getLogger("dockyard.webhooks")


def check_webhook_url(
    url: str, *, allow_private: bool, allowed_domains: tuple[str, ...] = ()
) -> str:
    """Refuse URLs that would let a run reach the server's private network.

    Private, loopback, link-local and reserved addresses are refused unless ``allow_private``
    (``dockyard dev`` allows them so a local listener works); ``allowed_domains`` narrows targets.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"Invalid webhook URL {url!r}: use an absolute http(s) URL",
                           code="invalid_webhook")
    host = parts.hostname
    if allowed_domains and not any(
        host == d or host.endswith("." + d) for d in allowed_domains
    ):
        raise InvalidInput(f"Webhook host {host!r} is not in DOCKYARD_WEBHOOK_ALLOWED_DOMAINS",
                           code="webhook_forbidden")
    if allow_private:
        return url
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise InvalidInput(f"Webhook host {host!r} does not resolve: {exc}",
                           code="invalid_webhook") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if not _is_public(ip):
            raise InvalidInput(
                f"Webhook host {host!r} resolves to a non-public address ({ip}); set "
                "DOCKYARD_ALLOW_PRIVATE_WEBHOOKS=true to allow it",
                code="webhook_forbidden",
            )
    return url


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """``is_global``, also for IPv4 addresses carried inside IPv6 ones (mapped, 6to4, NAT64),
    which reach the embedded IPv4 host: ``64:ff9b::7f00:1`` is 127.0.0.1 behind a NAT64."""
    if not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded.is_global
    return True


class WebhookSender:
    """Posts the finished run and its values; retries with exponential backoff and jitter."""

    def __init__(self, *, attempts: int = 3, timeout: float = 10.0) -> None:
        self.attempts = attempts
        self.timeout = timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def schedule(self, url: str, payload: dict[str, Any]) -> None:
        task = asyncio.create_task(self._deliver(url, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        body = json_dumps(payload)
        for attempt in range(1, self.attempts + 1):
            try:
                resp = await self._client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                if resp.status_code < 500:
                    log.info("webhook_sent url_host=%s status=%s", urlsplit(url).hostname,
                             resp.status_code)
                    return
            except httpx.HTTPError as exc:
                log.info("webhook_attempt_failed attempt=%d error=%s", attempt, type(exc).__name__)
            await asyncio.sleep(min(10.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random()))
        log.warning("webhook_gave_up url_host=%s", urlsplit(url).hostname)

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._client is not None:
            await self._client.aclose()
