"""Event triggers: ``POST /triggers/{name}`` starts a run from an external system's webhook.

A trigger is declared in the project file under the ``dockyard`` key::

    "dockyard": {
      "triggers": {
        "github-push": {
          "assistant_id": "agent",                 # a graph id or an assistant UUID
          "scheme": "github",                      # github | slack | dockyard
          "secret_env": "GITHUB_WEBHOOK_SECRET",   # the variable holding the shared secret
          "input": {"repo": "$.repository.full_name", "kind": "push"},
          "idempotency": "header:X-GitHub-Delivery",
          "thread_id": "$.repository.id"           # optional: one thread per repository
        }
      },
      "webhook_secrets": {"agent": "AGENT_WEBHOOK_SECRET"}
    }

Each request is verified (signature, replay window), its body parsed (JSON, or form-encoded
for Slack commands), mapped to the run's input, and deduplicated by an idempotency key before
the run is created through ``RunService``: a redelivered event answers with the first run.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from dockyard.config import ProjectConfig
from dockyard.errors import BadRequest, ConfigError, Conflict, InvalidInput, NotFound, Unauthorized
from dockyard.serde import json_dumps
from dockyard.services import jsonpath
from dockyard.services.ids import is_uuid, new_id
from dockyard.services.runs import MULTITASK, RunService
from dockyard.storage.webhooks import TriggerEvents
from dockyard.webhooks import SIGNATURE_HEADER, InvalidSignature, verify_signature

log = logging.getLogger("dockyard.triggers")

SCHEMES = ("github", "slack", "dockyard")
REPLAY_WINDOW_SECONDS = 300
# A reservation whose run never started (its process died) may be taken over after this long.
STALE_RESERVATION_SECONDS = 30.0
DEFAULT_IDEMPOTENCY = {
    "github": "header:X-GitHub-Delivery",
    "slack": "$.event_id",
    "dockyard": "header:Dockyard-Webhook-Id",
}
SECTION_KEYS = {"triggers", "webhook_secrets", "smoke"}
TRIGGER_KEYS = {"assistant_id", "scheme", "secret_env", "input", "idempotency", "thread_id",
                "multitask_strategy", "metadata", "tenant"}
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_HEADER_RE = re.compile(r"^[A-Za-z0-9\-]{1,64}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class TriggerSpec:
    name: str
    assistant_id: str
    scheme: str
    secret_env: str
    input: Any = "$"
    idempotency: str | None = None  # "header:<name>" or a JSON path; None: off
    thread_id: str | None = None  # a JSON path; None: stateless runs
    multitask_strategy: str = "enqueue"
    metadata: dict[str, Any] = field(default_factory=dict)
    tenant: str = "default"  # whose run it starts: the trigger is public, its signature is auth


@dataclass(frozen=True)
class DockyardSection:
    """The project file's ``dockyard`` key, validated."""

    triggers: dict[str, TriggerSpec] = field(default_factory=dict)
    webhook_secrets: dict[str, str] = field(default_factory=dict)  # assistant/graph id -> env var
    # graph id -> {"input": …, "config": {…}}: run once when a revision is verified
    smoke: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_dockyard_section(project: ProjectConfig) -> DockyardSection:
    """Validate the ``dockyard`` key; errors name the file and the key."""
    src = str(project.source)

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(message, file=src, key=key)

    raw = project.extra.get("dockyard", {})
    if not isinstance(raw, dict):
        raise fail("dockyard", "expected an object")
    for key in raw:
        if key not in SECTION_KEYS:
            raise fail(f"dockyard.{key}", f"unknown key; supported: {sorted(SECTION_KEYS)}")
    secrets_raw = raw.get("webhook_secrets", {})
    if not isinstance(secrets_raw, dict):
        raise fail("dockyard.webhook_secrets", "expected an object mapping assistant or graph "
                   "ids to the names of environment variables holding their secrets")
    for ident, env in secrets_raw.items():
        if not isinstance(env, str) or not _ENV_RE.match(env):
            raise fail(f"dockyard.webhook_secrets.{ident}",
                       "expected the name of an environment variable, e.g. 'AGENT_WEBHOOK_SECRET'")
    triggers_raw = raw.get("triggers", {})
    if not isinstance(triggers_raw, dict):
        raise fail("dockyard.triggers", "expected an object mapping trigger names to triggers")
    triggers = {
        name: _parse_trigger(project, name, spec, fail) for name, spec in triggers_raw.items()
    }
    smoke_raw = raw.get("smoke", {})
    if not isinstance(smoke_raw, dict):
        raise fail("dockyard.smoke", "expected an object mapping graph ids to "
                   '{"input": …, "config": {…}}')
    for graph_id, spec in smoke_raw.items():
        where = f"dockyard.smoke.{graph_id}"
        if graph_id not in project.graphs:
            raise fail(where, f"no graph {graph_id!r} in this project")
        if not isinstance(spec, dict) or set(spec) - {"input", "config"}:
            raise fail(where, 'expected {"input": …} with an optional "config" object')
        if not isinstance(spec.get("config", {}), dict):
            raise fail(f"{where}.config", "expected an object")
    return DockyardSection(triggers=triggers, webhook_secrets=dict(secrets_raw),
                           smoke=dict(smoke_raw))


def _parse_trigger(
    project: ProjectConfig, name: str, spec: Any, fail: Callable[[str, str], ConfigError]
) -> TriggerSpec:
    base = f"dockyard.triggers.{name}"
    if not _NAME_RE.match(name):
        raise fail(base, "a trigger name is 1-64 letters, digits, '-', '_' or '.' (it is a URL "
                   "path segment)")
    if not isinstance(spec, dict):
        raise fail(base, "expected an object")
    for key in spec:
        if key not in TRIGGER_KEYS:
            raise fail(f"{base}.{key}", f"unknown key; supported: {sorted(TRIGGER_KEYS)}")
    assistant = spec.get("assistant_id")
    if not isinstance(assistant, str) or not assistant:
        raise fail(f"{base}.assistant_id", "required: a graph id or an assistant UUID")
    if assistant not in project.graphs and not is_uuid(assistant):
        raise fail(f"{base}.assistant_id", f"{assistant!r} is neither a graph of this project "
                   f"({', '.join(project.graphs)}) nor an assistant UUID")
    scheme = spec.get("scheme")
    if scheme not in SCHEMES:
        raise fail(f"{base}.scheme", f"required: one of {list(SCHEMES)}")
    secret_env = spec.get("secret_env")
    if not isinstance(secret_env, str) or not _ENV_RE.match(secret_env):
        raise fail(f"{base}.secret_env", "required: the name of the environment variable that "
                   "holds the shared secret")
    template = spec.get("input", "$")
    try:
        jsonpath.check_template(template, f"{base}.input")
    except jsonpath.PathError as exc:
        key, _, message = str(exc).partition(": ")
        raise fail(key, message) from None
    idempotency = spec.get("idempotency", DEFAULT_IDEMPOTENCY[scheme])
    if idempotency == "none":
        idempotency = None
    elif not isinstance(idempotency, str):
        raise fail(f"{base}.idempotency", "expected 'header:<Name>', a JSON path or 'none'")
    elif idempotency.startswith("header:"):
        if not _HEADER_RE.match(idempotency[7:]):
            raise fail(f"{base}.idempotency", f"invalid header name {idempotency[7:]!r}")
    else:
        _check_path(idempotency, f"{base}.idempotency", fail)
    thread = spec.get("thread_id")
    if thread is not None:
        if not isinstance(thread, str):
            raise fail(f"{base}.thread_id", "expected a JSON path such as '$.repository.id'")
        _check_path(thread, f"{base}.thread_id", fail)
    strategy = spec.get("multitask_strategy", "enqueue")
    if strategy not in MULTITASK:
        raise fail(f"{base}.multitask_strategy", f"expected one of {list(MULTITASK)}")
    metadata = spec.get("metadata", {})
    if not isinstance(metadata, dict):
        raise fail(f"{base}.metadata", "expected an object")
    tenant = spec.get("tenant", "default")
    if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
        raise fail(f"{base}.tenant", "expected a tenant id (1-64 letters, digits, '-', '_', '.')")
    return TriggerSpec(name=name, assistant_id=assistant, scheme=scheme, secret_env=secret_env,
                       input=template, idempotency=idempotency, thread_id=thread,
                       multitask_strategy=strategy, metadata=metadata, tenant=tenant)


def _check_path(expr: str, key: str, fail: Callable[[str, str], ConfigError]) -> None:
    try:
        jsonpath.parse(expr)
    except jsonpath.PathError as exc:
        raise fail(key, str(exc)) from None


def secret_from_env(env: str, src: str, key: str) -> str:
    """The secret in ``$env``; a ConfigError naming the key if it is unset or empty."""
    value = os.environ.get(env, "")
    if not value:
        raise ConfigError(f"environment variable {env} is not set (it holds the secret)",
                          file=src, key=key)
    return value


# ---- signature schemes -------------------------------------------------------------------------

def verify_github(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`` (GitHub, Gitea, …)."""
    header = headers.get("x-hub-signature-256", "")
    if not header.startswith("sha256="):
        raise Unauthorized("missing or malformed X-Hub-Signature-256 header",
                           code="invalid_signature")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, header[7:].strip()):
        raise Unauthorized("X-Hub-Signature-256 does not match the body", code="invalid_signature")


def verify_slack(
    secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None
) -> None:
    """``X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:{timestamp}:{body}")>`` with
    ``X-Slack-Request-Timestamp`` no further than 5 minutes from now (replay protection)."""
    header = headers.get("x-slack-signature", "")
    stamp = headers.get("x-slack-request-timestamp", "")
    if not header.startswith("v0=") or not stamp:
        raise Unauthorized("missing X-Slack-Signature (v0=…) or X-Slack-Request-Timestamp header",
                           code="invalid_signature")
    try:
        ts = int(stamp)
    except ValueError:
        raise Unauthorized("malformed X-Slack-Request-Timestamp", code="invalid_signature") from None
    current = time.time() if now is None else now
    if abs(current - ts) > REPLAY_WINDOW_SECONDS:
        raise Unauthorized(f"X-Slack-Request-Timestamp is more than {REPLAY_WINDOW_SECONDS}s "
                           "from now (replayed or clock skew)", code="invalid_signature")
    base = b"v0:" + stamp.encode() + b":" + body
    expected = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, header[3:].strip()):
        raise Unauthorized("X-Slack-Signature does not match the body", code="invalid_signature")


def verify_dockyard(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Another Dockyard's webhook (``Dockyard-Signature: t=…,v1=…``), 5-minute window."""
    try:
        verify_signature(secret, body, headers.get(SIGNATURE_HEADER.lower()),
                         tolerance=REPLAY_WINDOW_SECONDS)
    except InvalidSignature as exc:
        raise Unauthorized(f"{SIGNATURE_HEADER}: {exc}", code="invalid_signature") from None


VERIFIERS: dict[str, Callable[[str, bytes, Mapping[str, str]], None]] = {
    "github": verify_github, "slack": verify_slack, "dockyard": verify_dockyard,
}


# ---- the service -------------------------------------------------------------------------------

def parse_body(body: bytes, content_type: str) -> Any:
    """JSON, or a form (Slack commands and interactivity; a ``payload`` field holding JSON is
    decoded). Raises BadRequest (400) for anything else."""
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        try:
            form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True,
                                                   strict_parsing=bool(body)).items()}
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest(f"Malformed form body: {exc}", code="invalid_trigger_payload") from None
        if "payload" in form:
            try:
                form["payload"] = orjson.loads(form["payload"])
            except orjson.JSONDecodeError:
                pass  # a plain string field named payload
        return form
    if not body.strip():
        raise BadRequest("Empty request body: expected JSON", code="invalid_trigger_payload")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"Malformed JSON in request body: {exc}",
                         code="invalid_trigger_payload") from None


class TriggerService:
    def __init__(
        self, triggers: dict[str, TriggerSpec], events: TriggerEvents, runs: RunService
    ) -> None:
        self.triggers = triggers
        self.events = events
        self.runs = runs
        self._secrets: dict[str, str] = {}
        self._tenants_ready: set[str] = set()

    def load_secrets(self, src: str) -> None:
        """Read each trigger's secret from the environment (at start, after the project's env
        is applied); a missing one stops the server naming the key."""
        self._secrets = {
            name: secret_from_env(spec.secret_env, src, f"dockyard.triggers.{name}.secret_env")
            for name, spec in self.triggers.items()
        }

    async def handle(
        self, tenant: str, name: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Verify, map and start the run; ``headers`` have lower-case names.

        Returns ``(202, …)`` for a new run, ``(200, …)`` for a duplicate event (the first run)
        or a handshake (Slack ``url_verification``, GitHub ``ping``) that starts nothing.
        """
        spec = self.triggers.get(name)
        if spec is None:
            raise NotFound(f"Trigger {name!r} is not configured", code="trigger_not_found")
        VERIFIERS[spec.scheme](self._secrets[name], body, headers)
        # The route is public (the signature authenticates the sender): the run belongs to the
        # tenant the trigger is configured for, not to the anonymous caller's.
        tenant = spec.tenant
        if tenant not in self._tenants_ready:  # its graphs' default assistants, once
            await self.runs.assistants.ensure_defaults(tenant)
            self._tenants_ready.add(tenant)
        payload = parse_body(body, headers.get("content-type", "application/json"))
        if spec.scheme == "slack" and isinstance(payload, dict) and payload.get("type") == \
                "url_verification":
            return 200, {"challenge": payload.get("challenge")}
        if spec.scheme == "github" and headers.get("x-github-event") == "ping":
            return 200, {"ok": True, "event": "ping", "trigger": name}
        key = self._idempotency_key(spec, payload, headers)
        thread_id = self._thread_id(spec, payload)
        run_payload: dict[str, Any] = {
            "assistant_id": spec.assistant_id,
            "input": jsonpath.render(spec.input, payload),
            "metadata": {**spec.metadata, "trigger": name,
                         **({"trigger_event_id": key} if key else {})},
            "multitask_strategy": spec.multitask_strategy,
        }
        if thread_id is not None:
            run_payload["if_not_exists"] = "create"
        run_id = new_id()
        if key is not None:
            duplicate = await self._reserve(tenant, name, key, run_id, thread_id)
            if duplicate is not None:
                log.info("trigger_duplicate trigger=%s run_id=%s", name, duplicate["run_id"])
                return 200, {"run_id": duplicate["run_id"], "thread_id": duplicate["thread_id"],
                             "trigger": name, "duplicate": True}
        try:
            run = await self.runs.create(tenant, thread_id, run_payload, run_id=run_id)
        except Exception:
            if key is not None:
                await self.events.release(tenant, name, key, run_id)
            raise
        if key is not None:
            await self.events.mark_started(tenant, name, key, run["thread_id"])
        log.info("trigger_run_created trigger=%s run_id=%s", name, run["run_id"])
        return 202, {"run_id": run["run_id"], "thread_id": run["thread_id"], "trigger": name,
                     "duplicate": False}

    async def _reserve(
        self, tenant: str, name: str, key: str, run_id: str, thread_id: str | None
    ) -> dict[str, Any] | None:
        """None if this request owns ``key`` now; else the event row of the first delivery."""
        existing = await self.events.reserve(tenant, name, key, run_id, thread_id)
        if existing is None:
            return None
        if existing["started"]:
            return existing
        age = (datetime.now(UTC) - datetime.fromisoformat(existing["created_at"])).total_seconds()
        if age > STALE_RESERVATION_SECONDS and await self.events.take_over(
            tenant, name, key, existing, run_id, thread_id
        ):
            return None
        raise Conflict("An event with this idempotency key is being processed; retry later",
                       code="trigger_event_in_progress", retry_after=5)

    @staticmethod
    def _idempotency_key(
        spec: TriggerSpec, payload: Any, headers: Mapping[str, str]
    ) -> str | None:
        """The configured source; else a generic ``Idempotency-Key`` header; else None."""
        value: Any = None
        source = spec.idempotency
        if source is None:
            return None
        if source.startswith("header:"):
            value = headers.get(source[7:].lower())
        else:
            value = jsonpath.resolve(payload, jsonpath.parse(source))
        if value in (None, ""):
            value = headers.get("idempotency-key")
        if value in (None, ""):
            return None
        key = value if isinstance(value, str) else json_dumps(value).decode()
        if len(key) > MAX_KEY_LENGTH:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return key

    @staticmethod
    def _thread_id(spec: TriggerSpec, payload: Any) -> str | None:
        """A thread per value of the configured field (a uuid5 of trigger and value)."""
        if spec.thread_id is None:
            return None
        value = jsonpath.resolve(payload, jsonpath.parse(spec.thread_id))
        if value is None or value == "":
            raise InvalidInput(f"The payload has no value at {spec.thread_id} (the trigger's "
                               "thread_id)", code="trigger_payload_unmapped")
        text = value if isinstance(value, str) else json_dumps(value).decode()
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"dockyard:trigger:{spec.name}:{text}"))
