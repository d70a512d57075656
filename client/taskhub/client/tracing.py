"""OpenTelemetry traces, optional: on when the `otel` extra is installed and `OTEL_TRACES_EXPORTER` names an exporter.

Configured by OpenTelemetry's own variables: `OTEL_TRACES_EXPORTER` (`otlp`, `console`, a comma list; unset or
`none`: off, as is `OTEL_SDK_DISABLED=true`), `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, `OTEL_PROPAGATORS`. Off is the default because
an OpenTelemetry SDK left alone would export to an OTLP collector on localhost that most setups do not run.

When on, every gRPC call made or served in the process gets a span (opentelemetry-instrumentation-grpc,
installed globally), and `span()` starts taskhub's own spans (a worker's handler) as children of a trace
context carried as W3C headers (`traceparent`, `tracestate`). Without the extra, everything here is a no-op
and nothing imports OpenTelemetry.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

try:
    from opentelemetry import context as otel_context, propagate, trace
except ImportError:  # the `otel` extra is not installed
    trace = None

log = logging.getLogger(__name__)

_state: dict[str, Any] = {"provider": None, "tracer": None, "instrumentors": []}


def wanted() -> bool:
    """Whether the environment asks for traces (whether or not the extra is installed)."""
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return bool(exporters) and exporters != "none" and not disabled


def available() -> bool:
    """Whether the `otel` extra is installed."""
    return trace is not None


def enabled() -> bool:
    """Whether this process traces."""
    return _state["provider"] is not None


def start(service_name: str, *, server: bool = False) -> bool:
    """Turns tracing on as the OTEL_* variables ask, if they do; answers whether it is on."""
    if not wanted():
        return False
    if trace is None:
        log.warning("OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed: pip install 'taskhub[otel]'")
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, names the service; given attributes would override it.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in os.environ["OTEL_TRACES_EXPORTER"].split(","):
        if name.strip().lower() not in ("", "none"):
            provider.add_span_processor(BatchSpanProcessor(_exporter(name.strip().lower())))
    trace.set_tracer_provider(provider)
    instrument(provider, server=server)
    log.info("tracing on: spans go to %s", os.environ["OTEL_TRACES_EXPORTER"])
    return True


def _exporter(name: str) -> Any:
    """The span exporter registered under `name`, as OpenTelemetry's SDK finds them (entry points)."""
    found = {e.name: e for e in entry_points(group="opentelemetry_traces_exporter")}
    if name == "otlp" and name not in found:  # the name `opentelemetry-exporter-otlp` gives its gRPC exporter
        name = "otlp_proto_grpc"
    if name not in found:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: no span exporter named `{name}` is installed (installed: {', '.join(sorted(found))})"
        )
    return found[name].load()()


def instrument(provider: Any, *, server: bool = False) -> None:
    """Traces with `provider` from now on: gRPC calls made (and served, with `server`) get spans.

    The instrumentations patch grpcio's channel and server constructors, so call this before any is made.
    """
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
        GrpcInstrumentorClient,
    )

    instrumentors = [GrpcInstrumentorClient(), GrpcAioInstrumentorClient()]
    if server:
        instrumentors.append(GrpcAioInstrumentorServer())
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    # One tracer for taskhub's own spans: getting it costs more than a span.
    _state.update(provider=provider, tracer=provider.get_tracer("taskhub"), instrumentors=instrumentors)


def stop() -> None:
    """Undoes `instrument` (tests)."""
    for instrumentor in _state["instrumentors"]:
        instrumentor.uninstrument()
    _state.update(provider=None, tracer=None, instrumentors=[])


def provider() -> Any:
    """The tracer provider in use, or None when off."""
    return _state["provider"]


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`, `tracestate`); empty when off or outside a span."""
    if not enabled():
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextlib.contextmanager
def span(name: str, parent: Mapping[str, str], attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A span as the current one, child of the trace context in `parent` (a new trace if it holds none)."""
    if not enabled():
        yield None
        return
    with _state["tracer"].start_as_current_span(
        name, context=propagate.extract(dict(parent)), attributes=attributes
    ) as current:
        yield current


def record(name: str, parent: Mapping[str, str], attributes: Mapping[str, Any], error: str | None = None) -> None:
    """A span of a moment (nothing runs within it), child of the trace context in `parent`; failed with `error`.

    Cheaper than `span()`: it is never made the current span, which a server recording one per leased
    task would pay for on every task.
    """
    if not enabled():
        return
    current = _state["tracer"].start_span(name, context=propagate.extract(parent), attributes=attributes)
    if error is not None:
        current.set_status(trace.Status(trace.StatusCode.ERROR, error))
    current.end()


def failed(current: Any, description: str) -> None:
    """Marks a span from `span()` as failed."""
    if current is not None:
        current.set_status(trace.Status(trace.StatusCode.ERROR, description))


@contextlib.contextmanager
def within(parent: Mapping[str, str]) -> Iterator[None]:
    """The trace context in `parent` as the current one (the calls made inside join its trace)."""
    if not enabled() or not parent:
        yield
        return
    token = otel_context.attach(propagate.extract(dict(parent)))
    try:
        yield
    finally:
        otel_context.detach(token)
