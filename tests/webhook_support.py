"""Shared by the webhook and trigger tests: a real local HTTP receiver and a tiny project."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from dockyard.webhooks import SIGNATURE_HEADER, InvalidSignature, verify_signature
from tests.http_support import QuietHandler, serve_http

# A plain callable: the thread's values become {"got": <the run's input>}.
ECHO = """
async def echo(inputs):
    return {"got": inputs}
"""


def write_project(root: Path, **extra: Any) -> Path:
    (root / "echo.py").write_text(ECHO)
    (root / "langgraph.json").write_text(json.dumps({"graphs": {"echo": "./echo.py:echo"}, **extra}))
    return root


class Receiver:
    """Records every POST; answers with the scripted statuses in turn, then 200. Each request's
    signature is checked with the published recipe, ``dockyard.webhooks.verify_signature``."""

    def __init__(self, statuses: list[int], secret: str | None) -> None:
        self.statuses = list(statuses)
        self.secret = secret
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.url = ""

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("content-length", 0)))
        verdict = "unsigned"
        if self.secret is not None:
            try:
                verify_signature(self.secret, body, handler.headers.get(SIGNATURE_HEADER))
                verdict = "valid"
            except InvalidSignature as exc:
                verdict = f"invalid: {exc}"
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.requests.append({"headers": {k.lower(): v for k, v in handler.headers.items()},
                                  "body": body, "signature": verdict, "answered": status})
        handler.send_response(status)
        handler.send_header("content-length", "2")
        handler.end_headers()
        handler.wfile.write(b"no" if status >= 300 else b"ok")


@contextmanager
def receiver(statuses: list[int] | None = None, secret: str | None = None) -> Iterator[Receiver]:
    rec = Receiver(statuses or [], secret)

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            rec.handle(self)

    with serve_http(Handler) as base:
        rec.url = f"{base}/hook"
        yield rec


def until(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (a deadline, not a timing assert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
