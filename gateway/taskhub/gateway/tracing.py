"""Spans for the gateway's HTTP requests, when the process traces (`taskhub.client.tracing`).

OpenTelemetry's Starlette instrumentation wraps the app; the gRPC calls a request makes run within its
span, so the gRPC client instrumentation carries the trace on to the server.
"""

from __future__ import annotations

from starlette.applications import Starlette

from taskhub.client import tracing


def instrument(app: Starlette) -> Starlette:
    """`app`, with a span for each request when tracing is on."""
    if tracing.enabled():
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app, tracer_provider=tracing.provider())
    return app
