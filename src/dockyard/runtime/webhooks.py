"""Run-completion webhooks: the URL policy (SSRF guard) and the delivery loop.

A finished run with a ``webhook`` gets a row in ``webhook_deliveries`` (written in the same
transaction as the run's outcome, see the executor). ``WebhookDeliverer`` runs in processes that
execute runs (roles ``all`` and ``worker``): it claims due rows, POSTs the stored body signed
with HMAC-SHA256 (``dockyard.webhooks``), and records the outcome. Failures on 5xx, 429 and
network errors are retried with exponential backoff and full jitter up to ``max_attempts``;
other 4xx (and 3xx: redirects are not followed) fail the delivery at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from dockyard import __version__
from dockyard.errors import InvalidInput
from dockyard.runtime.loops import stop_loop
from dockyard.storage.webhooks import Statement, WebhookDeliveries, at
from dockyard.webhooks import ATTEMPT_HEADER, ID_HEADER, SIGNATURE_HEADER, sign

log = logging.getLogger("dockyard.webhooks")


@dataclass(frozen=True)
class UrlPolicy:
    """Where webhooks may go. ``dockyard dev`` allows http and private/loopback targets."""

    allow_private: bool = False
    allowed_domains: tuple[str, ...] = ()
    require_https: bool = True

    def check(self, url: str) -> str:
        return check_webhook_url(url, allow_private=self.allow_private,
                                 allowed_domains=self.allowed_domains,
                                 require_https=self.require_https)

    async def acheck(self, url: str) -> str:
        """``check`` with name resolution off the event loop (getaddrinfo blocks)."""
        if self.allow_private:
            return self.check(url)
        return await asyncio.to_thread(self.check, url)


def check_webhook_url(
    url: str, *, allow_private: bool, allowed_domains: tuple[str, ...] = (),
    require_https: bool = False,
) -> str:
    """Refuse URLs that would let a run reach the server's private network.

    Private, loopback, link-local and reserved addresses are refused unless ``allow_private``
    (``dockyard dev`` allows them so a local listener works); ``allowed_domains`` narrows targets;
    ``require_https`` refuses plain http (production default).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"Invalid webhook URL {url!r}: use an absolute http(s) URL",
                           code="invalid_webhook")
    host = parts.hostname
    if require_https and parts.scheme != "https":
        raise InvalidInput(
            f"Webhook URL for host {host!r} must use https (DOCKYARD_WEBHOOK_REQUIRE_HTTPS; "
            "plain http is allowed in `dockyard dev`)", code="webhook_forbidden",
        )
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




# ---- delivery ---------------------------------------------------------------------------------

SecretLookup = Callable[[str | None, str | None], str | None]
"""``(assistant_id, graph_id) -> secret or None``: which key signs a run's webhook."""


def is_retryable(status_code: int) -> bool:
    """5xx and 429 are the receiver's temporary trouble; other 4xx will not get better."""
    return status_code >= 500 or status_code == 429


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))],
    which spreads the retries of many failed deliveries instead of synchronising them."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for webhooks, the backoff applies


def _split_userinfo(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """``https://user:pw@host/x`` → (``https://host/x``, basic auth): the same request, but
    httpx's request log line shows the URL without the password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    bare = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return bare, httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))


class WebhookDeliverer:
    """Claims due deliveries and POSTs them, ``concurrency`` at a time, in this process."""

    def __init__(
        self,
        deliveries: WebhookDeliveries,
        *,
        policy: UrlPolicy,
        secret_for: SecretLookup,
        max_attempts: int = 10,
        backoff_seconds: float = 2.0,
        backoff_max_seconds: float = 3600.0,
        timeout: float = 10.0,
        concurrency: int = 8,
        poll_seconds: float = 1.0,
    ) -> None:
        self.deliveries = deliveries
        self.policy = policy
        self.secret_for = secret_for
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.timeout = timeout
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        # A claimed delivery is due again after this long: the attempt's process died.
        self.lease_seconds = timeout + 30.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    # ---- enqueue (called by the executor) --------------------------------------------------
    def delivery_statement(
        self, tenant: str, run: dict[str, Any], url: str, body: bytes
    ) -> Statement:
        """The INSERT of a delivery of ``body`` to ``url``, for the run's outcome transaction."""
        return self.deliveries.insert_statement(
            tenant, str(uuid.uuid4()), run, url, body, self.max_attempts
        )

    def notify(self) -> None:
        """A delivery was queued in this process: look for due rows now."""
        self._wake.set()

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._stopping = False
        self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        self._loop_task = asyncio.create_task(self._loop(), name="dockyard-webhooks")

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming; give attempts in flight ``grace_seconds``. An attempt cut short is
        retried (by any process) once its lease expires."""
        self._stopping = True  # the loop ends on it (runtime/loops.py says why)
        await stop_loop(self._loop_task, self._wake)
        self._loop_task = None
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _loop(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._inflight)
            rows: list[dict[str, Any]] = []
            if free > 0:
                try:
                    rows = await self.claim(free)
                except Exception:
                    log.exception("webhook_claim_failed")
            for row in rows:
                task = asyncio.create_task(self.attempt(row), name=f"webhook-{row['delivery_id']}")
                self._inflight.add(task)
                task.add_done_callback(self._attempt_done)
            if rows or self._stopping:
                continue
            self._wake.clear()
            timeout = self.poll_seconds if free <= 0 else await self._idle_timeout()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _idle_timeout(self) -> float:
        try:
            nxt = await self.deliveries.next_due_at()
        except Exception:
            log.exception("webhook_poll_failed")
            return self.poll_seconds
        if nxt is None:
            return self.poll_seconds
        delay = (datetime.fromisoformat(nxt) - datetime.now(UTC)).total_seconds()
        return max(0.005, min(self.poll_seconds, delay))

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        rows, exhausted = await self.deliveries.claim(limit, self.lease_seconds)
        for delivery_id in exhausted:
            log.warning("webhook_failed delivery_id=%s reason=attempts_exhausted", delivery_id)
        return rows

    async def deliver_due(self) -> int:
        """Claim and attempt every due delivery now, in this task (tests, tools)."""
        rows = await self.claim(self.concurrency)
        await asyncio.gather(*(self.attempt(r) for r in rows))
        return len(rows)

    # ---- one attempt -------------------------------------------------------------------------
    async def attempt(self, row: dict[str, Any]) -> None:
        try:
            await self._attempt(row)
        except Exception:
            log.exception("webhook_attempt_crashed delivery_id=%s", row["delivery_id"])

    async def _attempt(self, row: dict[str, Any]) -> None:
        delivery_id, attempt, url = row["delivery_id"], int(row["attempts"]), row["url"]
        host = urlsplit(url).hostname
        try:
            # Again at delivery time: DNS may have changed since the run was created.
            await self.policy.acheck(url)
        except InvalidInput as exc:
            await self.deliveries.record(delivery_id, attempt, status="failed", status_code=None,
                                         error=exc.message)
            log.warning("webhook_failed delivery_id=%s url_host=%s reason=url_policy", delivery_id,
                        host)
            return
        body = row["body"].encode()
        headers = {
            "content-type": "application/json",
            "user-agent": f"Dockyard/{__version__}",
            ID_HEADER: delivery_id,
            ATTEMPT_HEADER: str(attempt),
        }
        secret = self.secret_for(row.get("assistant_id"), row.get("graph_id"))
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        if self._client is None:  # deliver_due() without start()
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        status_code: int | None = None
        retry_after: float | None = None
        target, auth = _split_userinfo(url)
        try:
            if auth is None:
                resp = await self._client.post(target, content=body, headers=headers)
            else:
                resp = await self._client.post(target, content=body, headers=headers, auth=auth)
            status_code = resp.status_code
            if 200 <= status_code < 300:
                await self.deliveries.record(delivery_id, attempt, status="succeeded",
                                             status_code=status_code, error=None)
                log.info("webhook_delivered delivery_id=%s url_host=%s status=%d attempt=%d",
                         delivery_id, host, status_code, attempt)
                return
            retryable = is_retryable(status_code)
            error = f"HTTP {status_code}"
            if 300 <= status_code < 400:
                error += " (redirects are not followed)"
            snippet = resp.text[:200].strip()
            if snippet:
                error += f": {snippet}"
            if status_code in (429, 503):
                retry_after = _retry_after(resp.headers.get("retry-after"))
        except httpx.HTTPError as exc:
            retryable = True
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if retryable and attempt < int(row["max_attempts"]):
            delay = backoff_delay(attempt, self.backoff_seconds, self.backoff_max_seconds)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.backoff_max_seconds))
            await self.deliveries.record(delivery_id, attempt, status="pending",
                                         status_code=status_code, error=error,
                                         next_attempt_at=at(delay))
            log.info("webhook_retry_scheduled delivery_id=%s url_host=%s attempt=%d delay=%.2f "
                     "error=%s", delivery_id, host, attempt, delay, error[:80])
            return
        await self.deliveries.record(delivery_id, attempt, status="failed",
                                     status_code=status_code, error=error)
        log.warning("webhook_failed delivery_id=%s url_host=%s attempts=%d error=%s",
                    delivery_id, host, attempt, error[:80])
