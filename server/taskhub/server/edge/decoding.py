"""Requests that are not a valid message for their method get INVALID_ARGUMENT.

grpc.aio reads each request with the method's `request_deserializer`; when that raises,
it logs a traceback and answers UNKNOWN. `Guarded` stands in for the server while the
generated `add_*Servicer_to_server` functions register their handlers: each handler's
deserializer answers a marker instead of raising, and its behaviour refuses the marker
with `bad_request` before the servicer sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast, overload

import grpc

from taskhub.errors import TaskHubError
from taskhub.server.edge.services import to_status


class _Undecodable:
    """What a request that could not be read is, for the behaviour to refuse."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _reading(deserializer, name: str):
    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or a nesting too deep for the parser
            return _Undecodable(f"The request is not a valid `{name}` message: {exc}.")

    return deserialize


async def _refuse(request: _Undecodable, context: grpc.aio.ServicerContext) -> None:
    await context.abort_with_status(to_status(TaskHubError("bad_request", request.message)))


@overload
def guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler: ...
@overload
def guard(handler: None) -> None: ...
def guard(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
    """The same handler, refusing undecodable requests; client-streaming ones are left as they are."""
    if handler is None or handler.request_streaming or handler.request_deserializer is None:
        return handler
    deserializer = handler.request_deserializer
    name = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = name.full_name if name is not None else "request"
    read = _reading(deserializer, name)
    # A request-unary handler has the behaviour its response kind names. The stubs describe the sync server's
    # (a function, a generator function); a grpc.aio server's are a coroutine and an async generator function.
    if handler.response_streaming:
        streams = cast(Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]], handler.unary_stream)

        async def streaming(request, context):
            if isinstance(request, _Undecodable):
                await _refuse(request, context)
            async for response in streams(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            streaming, request_deserializer=read, response_serializer=handler.response_serializer
        )
    answers = cast(Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], handler.unary_unary)

    async def unary(request, context):
        if isinstance(request, _Undecodable):
            await _refuse(request, context)
        return await answers(request, context)

    return grpc.unary_unary_rpc_method_handler(
        unary, request_deserializer=read, response_serializer=handler.response_serializer
    )


class _GuardedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self.inner = inner
        self.cache: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, handler_call_details):
        method = handler_call_details.method
        handler = self.cache.get(method)
        if handler is None:
            handler = guard(self.inner.service(handler_call_details))
            if handler is not None:  # callers name methods at will: only real ones are kept
                self.cache[method] = handler
        return handler


class Guarded:
    """A `grpc.aio.Server` to register servicers on: their handlers refuse undecodable requests."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.server.add_generic_rpc_handlers(tuple(_GuardedGeneric(h) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.server.add_registered_method_handlers(service, {name: guard(h) for name, h in handlers.items()})
