"""OpenTelemetry traces, only when configured: a span per run execution and per HTTP request.

Enabled by ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the standard variable; ``OTEL_SERVICE_NAME`` and
the other ``OTEL_*`` exporter variables apply as usual) when the ``otel`` extra is installed
(``pip install 'dockyard[otel]'``). Otherwise ``tracer_provider_from_env`` answers None and
nothing is imported or wrapped: zero overhead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("dockyard.tracing")

ENDPOINT_VAR = "OTEL_EXPORTER_OTLP_ENDPOINT"


def tracer_provider_from_env(role: str = "all") -> Any | None:
    """A TracerProvider exporting over OTLP/HTTP, or None when tracing is not configured."""
    if not os.environ.get(ENDPOINT_VAR, "").strip():
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing_disabled reason=%s", "OTEL_EXPORTER_OTLP_ENDPOINT is set but the "
                    "otel extra is not installed (pip install 'dockyard[otel]')")
        return None
    resource = Resource.create({
        "service.name": os.environ.get("OTEL_SERVICE_NAME", "dockyard"),
        "dockyard.role": role,
    })
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Graph code that calls trace.get_tracer() gets child spans of the run span; the global
    # provider can be set once per process, so a second app keeps the first one's.
    if type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        trace.set_tracer_provider(provider)
    log.info("tracing_enabled endpoint=%s", os.environ[ENDPOINT_VAR])
    return provider


def run_tracer(provider: Any | None) -> Any | None:
    return None if provider is None else provider.get_tracer("dockyard.runtime")


@contextmanager
def run_span(tracer: Any, run: dict[str, Any]) -> Iterator[Any]:
    """The span of one run execution; the caller sets ``dockyard.run.status`` at the end."""
    attributes = {
        "dockyard.run_id": str(run["run_id"]),
        "dockyard.thread_id": str(run["thread_id"]),
        "dockyard.assistant_id": str(run["assistant_id"]),
        "dockyard.graph_id": str(run["graph_id"]),
        "dockyard.tenant_id": str(run.get("tenant_id", "")),
        "dockyard.run.attempt": int(run.get("attempts") or 0),
    }
    with tracer.start_as_current_span("dockyard.run", attributes=attributes) as span:
        yield span

