"""The gRPC server interceptor timing every unary call, by service, method and status code.

Its own module, so that other interceptors (tracing) chain beside it: `grpc.aio.server(interceptors=[...])`.
Streaming calls (watches) are not timed, their length being the client's choice: the open watch
streams are a gauge of their own (`taskhub_watch_streams`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Histogram

from taskhub.server.metrics import buckets


class RpcMetrics(grpc.aio.ServerInterceptor):
    """Observes `taskhub_grpc_server_handling_seconds{grpc_service, grpc_method, grpc_code}`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.seconds = Histogram(
            "taskhub_grpc_server_handling_seconds",
            "Unary gRPC calls, from the request read to the answer, by service, method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            buckets=buckets.LATENCY,
            registry=registry,
        )
        # Each method's handler, and the timed one standing for it.
        self._handlers: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.response_streaming:
            return handler
        # Called for every call: a method's timed handler is made once, while its handler stays the same.
        known = self._handlers.get(details.method)
        if known is not None and known[0] is handler:
            return known[1]
        service, _, method = details.method.lstrip("/").rpartition("/")
        timed = grpc.unary_unary_rpc_method_handler(
            self._timed(handler.unary_unary, service, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._handlers[details.method] = (handler, timed)
        return timed

    def _timed(self, behaviour: Any, service: str, method: str) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
        seconds = self.seconds
        # The method's histogram by code, looked up once each (`labels` takes a lock and builds a key).
        by_code: dict[str, Any] = {}

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            began = time.perf_counter()
            failed = True
            try:
                answer = await behaviour(request, context)
                failed = False
                return answer
            finally:
                # An aborted call has its code set; one that raised anything else is answered UNKNOWN.
                code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
                name = code.name if isinstance(code, grpc.StatusCode) else _code_name(code)
                child = by_code.get(name)
                if child is None:
                    child = by_code[name] = seconds.labels(service, method, name)
                child.observe(time.perf_counter() - began)

        return timed


def _code_name(code: object) -> str:
    """grpc.aio gives the code set by `abort` as the enum, or as its number on some paths."""
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return "UNKNOWN"
