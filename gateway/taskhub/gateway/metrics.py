"""`GET /metrics`: the server's series (over gRPC, `MetricsService.GetMetrics`) and the gateway's own.

The gateway's own, on a registry of its own: HTTP request latency by method, route template and
status (`Timing`, a middleware; event streams are not timed, their length being the client's
choice) and the event streams open now. The server checks the caller's key (`metrics.get`); the
gateway adds its series only to an answer the server gave.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from taskhub.gateway.events import Watches
from taskhub.v1 import metrics_service_pb2 as mpb

Handler = Callable[[Request], Awaitable[Response]]
Metadata = Callable[[Request], tuple[tuple[str, str], ...]]
# As the server's buckets (taskhub.server.metrics.buckets, which the gateway does not import).
LATENCY = (0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10.0)
# Requests matching no route: one label value, whatever their path (a path is unbounded).
UNMATCHED = "~unmatched"

disable_created_metrics()


class GatewayMetrics:
    """The gateway's registry: request latencies, and the open event streams of `watches`."""

    def __init__(self, watches: Watches) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.seconds = Histogram(
            "taskhub_http_request_duration_seconds",
            "HTTP requests to the gateway, from the request to the end of the answer, by method, route and status"
            " (event streams are not timed).",
            ["method", "route", "status"],
            buckets=LATENCY,
            registry=self.registry,
        )
        self.registry.register(_Streams(watches))

    def render(self) -> str:
        return generate_latest(self.registry).decode()


class _Streams(Collector):
    def __init__(self, watches: Watches) -> None:
        self.watches = watches

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "taskhub_http_sse_clients",
            "Event streams (server-sent events) open at the gateway.",
            value=self.watches.open,
        )


class Timing:
    """Times each HTTP request into `app.state.metrics`, labelled by the route template that answered it."""

    def __init__(self, app, routes: list[Route]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        streaming = False

        async def sending(message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                streaming = any(
                    name == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in message.get("headers", ())
                )
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if not streaming:
                metrics: GatewayMetrics = scope["app"].state.metrics
                metrics.seconds.labels(scope["method"], self._route(scope), str(status)).observe(
                    time.perf_counter() - began
                )

    def _route(self, scope) -> str:
        # Recent Starlette routers note the route they took in the scope, when they got this very scope.
        taken = scope.get("route")
        if taken is not None:
            return taken.path
        # Else as the router does, with the path as `TrimSlashes` (inside this middleware) gives it.
        scope = {**scope, "path": "/" + "/".join(part for part in scope["path"].split("/") if part)}
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return route.path
        return UNMATCHED


def routes(edge: Callable[[Handler], Handler], metadata: Metadata) -> list[Route]:
    """`GET /metrics`; `app` lends its error edge and credential forwarding."""

    @edge
    async def get_metrics(request: Request) -> Response:
        backend = request.app.state.backend
        answer = await backend.metrics.GetMetrics(
            mpb.GetMetricsRequest(), timeout=backend.timeout, metadata=metadata(request)
        )
        own = request.app.state.metrics.render()
        return Response(answer.text + own, media_type=answer.content_type or None)

    return [Route("/metrics", get_metrics, methods=["GET"])]
