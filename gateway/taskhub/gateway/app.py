"""The JSON gateway: Meilisearch's task routes, dumps, snapshots and version in front of taskhub's gRPC API.

`create_app(grpc_target)` builds the Starlette app; its lifespan opens one
grpc.aio channel and closes it. Each route parses (`query`, `enqueue`), makes
one gRPC call and renders (`render`), or streams a watch as server-sent events
(`events`); `edge` turns every failure into the `{message, code, type, link}`
body once. It reaches the server only over gRPC.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskhub import channels, limits
from taskhub.errors import TaskHubError, from_rpc_error, payload_too_large
from taskhub.gateway import batches, dashboard, enqueue, events, keys, metrics, operations, query, render, webhooks
from taskhub.gateway.guard import Guard
from taskhub.gateway.openapi import OPENAPI
from taskhub.metadata import GATEWAY_TOKEN
from taskhub.v1 import (
    key_service_pb2_grpc,
    metrics_service_pb2_grpc,
    task_pb2,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    webhook_service_pb2_grpc,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

UNAVAILABLE = "The task queue is unavailable right now: the gateway got no answer from its gRPC server. Retry later."


class Backend:
    """The gateway's one channel to the gRPC server, opened on first use or at startup."""

    def __init__(
        self,
        target: str,
        timeout: float,
        payload_limit: int = limits.DEFAULT_PAYLOAD_LIMIT,
        credentials: grpc.ChannelCredentials | None = None,
        watch_token: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        # As the server's: a page of big settings objects is more than gRPC's default 4 MiB.
        self.message_limit = limits.message_limit(payload_limit)
        self.credentials = credentials  # TLS (or local) credentials; None for plaintext
        # From the server that started this gateway: its watches then count per HTTP client, here.
        self.watch_metadata = ((GATEWAY_TOKEN, watch_token),) if watch_token else ()
        self._channel: grpc.aio.Channel | None = None
        self._tasks: task_service_pb2_grpc.TaskServiceStub | None = None
        self._health: health_pb2_grpc.HealthStub | None = None
        self._keys: key_service_pb2_grpc.KeyServiceStub | None = None
        self._metrics: metrics_service_pb2_grpc.MetricsServiceStub | None = None
        self._stubs: dict[Callable, tuple[grpc.aio.Channel, Any]] = {}
        self._webhooks: webhook_service_pb2_grpc.WebhookServiceStub | None = None

    def open(self) -> None:
        if self._channel is None:
            # One server or several replicas (a comma list, gRPC's `ipv4:` list, a DNS name with several
            # addresses): calls spread over them, and one that hits UNAVAILABLE goes again to another.
            self._channel = channels.aio_channel(self.target, self.credentials, message_limit=self.message_limit)
            self._tasks = task_service_pb2_grpc.TaskServiceStub(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)
            self._keys = key_service_pb2_grpc.KeyServiceStub(self._channel)
            self._metrics = metrics_service_pb2_grpc.MetricsServiceStub(self._channel)
            self._webhooks = webhook_service_pb2_grpc.WebhookServiceStub(self._channel)

    @property
    def tasks(self) -> task_service_pb2_grpc.TaskServiceStub:
        self.open()
        return self._tasks

    @property
    def health(self) -> health_pb2_grpc.HealthStub:
        self.open()
        return self._health

    @property
    def keys(self) -> key_service_pb2_grpc.KeyServiceStub:
        self.open()
        return self._keys

    @property
    def metrics(self) -> metrics_service_pb2_grpc.MetricsServiceStub:
        self.open()
        return self._metrics

    def stub(self, kind: Callable[[grpc.aio.Channel], T]) -> T:
        """A stub of another service on the one channel, made once a channel (`kind`: a generated stub class)."""
        self.open()
        made = self._stubs.get(kind)
        if made is None or made[0] is not self._channel:
            made = self._stubs[kind] = (self._channel, kind(self._channel))
        return made[1]

    @property
    def webhooks(self) -> webhook_service_pb2_grpc.WebhookServiceStub:
        self.open()
        return self._webhooks

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()


def error_response(
    error: TaskHubError, headers: dict[str, str] | None = None, status_code: int | None = None
) -> JSONResponse:
    return JSONResponse(error.to_dict(), status_code=status_code or error.kind.http_status, headers=headers)


def from_rpc(error: grpc.aio.AioRpcError) -> TaskHubError:
    """The public error of a failed call; transport trouble gets a message a client can act on."""
    mapped = from_rpc_error(error)
    if mapped.code == "unavailable":
        log.warning("gRPC server unavailable: %s %s", error.code(), error.details())
        return TaskHubError("unavailable", UNAVAILABLE)
    if mapped.code == "internal":
        log.error("gRPC call failed: %s %s", error.code(), error.details())
        return TaskHubError("internal", "internal error")
    return mapped


def edge(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Where every failure of a route becomes the error body: never a 500 with a trace."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except TaskHubError as error:
            return error_response(error)
        except grpc.aio.AioRpcError as error:
            return error_response(from_rpc(error))
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return error_response(TaskHubError("internal", "internal error"))

    return endpoint


def _raw_query(request: Request) -> str:
    # As received, still percent-encoded: it becomes `originalFilter`.
    return request.scope.get("query_string", b"").decode("utf-8", "replace")


def _metadata(request: Request) -> tuple[tuple[str, str], ...]:
    """Credentials travel on as `authorization` metadata (SPEC §4)."""
    value = request.headers.get("authorization")
    # gRPC metadata values must be printable ASCII; anything else is dropped, not sent.
    if value and value.isascii() and value.isprintable():
        return (("authorization", value),)
    return ()


def _backend(request: Request) -> Backend:
    return request.app.state.backend


@edge
async def list_tasks(request: Request) -> Response:
    backend = _backend(request)
    message = query.list_request(_raw_query(request))
    response = await backend.tasks.ListTasks(message, timeout=backend.timeout, metadata=_metadata(request))
    return JSONResponse(render.page(response))


@edge
async def get_task(request: Request) -> Response:
    backend = _backend(request)
    uid = _task_uid(request.path_params["uid"])
    response = await backend.tasks.GetTask(
        pb.GetTaskRequest(uid=uid), timeout=backend.timeout, metadata=_metadata(request)
    )
    return JSONResponse(render.task(response.task))


def _task_uid(raw: str) -> int:
    uid = query.parse_uint(raw)
    if uid is None:
        raise TaskHubError(
            "invalid_task_uids", f"Task uid `{raw}` is invalid. It should only contain numeric characters."
        )
    return uid


@edge
async def watch_tasks(request: Request) -> Response:
    """Every change of the matching tasks as server-sent events, resumable with `Last-Event-ID`."""
    backend = _backend(request)
    message = query.watch_request(_raw_query(request), events.last_event_id(request))
    if request.method == "HEAD":
        return events.head()
    watches = request.app.state.watches
    slot = watches.take(_client(request))
    metadata = _metadata(request)
    if not message.HasField("after"):
        # From now: clients of one key and filter share one gRPC stream (events.shared).
        check = pb.ListTasksRequest(filter=message.filter, limit=0)
        return await events.shared(
            message,
            metadata,
            watches,
            timeout=backend.timeout,
            describe=from_rpc,
            slot=slot,
            open_call=lambda: backend.tasks.WatchTasks(message, metadata=metadata + backend.watch_metadata),
            check=lambda: backend.tasks.ListTasks(check, timeout=backend.timeout, metadata=metadata),
        )
    call = backend.tasks.WatchTasks(message, metadata=metadata + backend.watch_metadata)
    return await events.changes(call, watches, timeout=backend.timeout, describe=from_rpc, slot=slot)


@edge
async def watch_task(request: Request) -> Response:
    """One task's current state, then each change until a terminal status, as server-sent events."""
    backend = _backend(request)
    uid = _task_uid(request.path_params["uid"])
    seen = events.last_event_id(request)
    if request.method == "HEAD":
        return events.head()
    slot = request.app.state.watches.take(_client(request))
    call = backend.tasks.WatchTask(pb.WatchTaskRequest(uid=uid), metadata=_metadata(request) + backend.watch_metadata)
    return await events.task(
        call, request.app.state.watches, timeout=backend.timeout, describe=from_rpc, seen=seen, slot=slot
    )


def _client(request: Request) -> str:
    """The HTTP client's address (behind a proxy that uvicorn trusts, the one it forwards for)."""
    return request.client.host if request.client is not None else "unknown"


@edge
async def cancel_tasks(request: Request) -> Response:
    backend = _backend(request)
    message = query.cancel_request(_raw_query(request))
    response = await backend.tasks.CancelTasks(message, timeout=backend.timeout, metadata=_metadata(request))
    return JSONResponse(render.summary(response.task), status_code=202)


@edge
async def requeue_tasks(request: Request) -> Response:
    """The failed or canceled tasks matching the filter, enqueued again: the new tasks, at once."""
    backend = _backend(request)
    message = query.requeue_request(_raw_query(request))
    response = await backend.tasks.RequeueTasks(message, timeout=backend.timeout, metadata=_metadata(request))
    return JSONResponse({"results": [render.task(task) for task in response.tasks]}, status_code=202)


@edge
async def delete_tasks(request: Request) -> Response:
    backend = _backend(request)
    message = query.delete_request(_raw_query(request))
    response = await backend.tasks.DeleteTasks(message, timeout=backend.timeout, metadata=_metadata(request))
    return JSONResponse(render.summary(response.task), status_code=202)


@edge
async def enqueue_task(request: Request) -> Response:
    backend = _backend(request)
    enqueue.require_json(request.headers.get("content-type"))
    message = enqueue.parse(await request.body())
    enqueue.custom_metadata(_raw_query(request), message)
    _idempotency_key(request, message)
    response = await backend.tasks.EnqueueTask(message, timeout=backend.timeout, metadata=_metadata(request))
    return JSONResponse(render.summary(response.task), status_code=202)


async def _enqueue_global(request: Request, type_: int) -> Response:
    # As Meilisearch's `POST /dumps` and `POST /snapshots`: no body and no parameter is read.
    backend = _backend(request)
    message = pb.EnqueueTaskRequest(type=type_)
    _idempotency_key(request, message)
    response = await backend.tasks.EnqueueTask(message, timeout=backend.timeout, metadata=_metadata(request))
    return JSONResponse(render.summary(response.task), status_code=202)


def _idempotency_key(request: Request, message: pb.EnqueueTaskRequest) -> None:
    """The `Idempotency-Key` header, when sent (even empty: the server says what is wrong with it); else one of
    the gateway's own for this request, as the channel retries an enqueue that hit UNAVAILABLE (its first try may
    have been stored) and the key makes that retry answer the first task instead of making a second."""
    key = request.headers.get("idempotency-key")
    message.idempotency_key = key if key is not None else uuid.uuid4().hex


@edge
async def create_dump(request: Request) -> Response:
    return await _enqueue_global(request, task_pb2.TASK_TYPE_DUMP_CREATION)


@edge
async def create_snapshot(request: Request) -> Response:
    return await _enqueue_global(request, task_pb2.TASK_TYPE_SNAPSHOT_CREATION)


@edge
async def get_version(request: Request) -> Response:
    """The server's version (not this gateway's: it may run apart, in front of a server of another release)."""
    backend = _backend(request)
    try:
        response = await backend.tasks.GetVersion(
            pb.GetVersionRequest(), timeout=backend.timeout, metadata=_metadata(request)
        )
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        # A server from before GetVersion: which release it is cannot be known from here.
        log.warning(
            "the gRPC server at %s has no GetVersion (an older release): its version is unknown", backend.target
        )
        response = pb.GetVersionResponse()
    return JSONResponse(render.version(response))


@edge
async def health(request: Request) -> Response:
    """Available when the gRPC server says it is serving; a gateway alone is no service."""
    backend = _backend(request)
    response = await backend.health.Check(health_pb2.HealthCheckRequest(), timeout=min(backend.timeout, 5.0))
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise TaskHubError("unavailable", UNAVAILABLE)
    return JSONResponse({"status": "available"})


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and methods get the error shape too, with their own status."""
    assert isinstance(exc, HTTPException)
    where = f"`{request.method} {request.url.path}`"
    message = {
        404: f"There is no route {where}; see `GET /openapi.json`.",
        405: f"{where}: method not allowed; see `GET /openapi.json`.",
    }.get(exc.status_code, str(exc.detail))
    return error_response(TaskHubError("bad_request", message), headers=exc.headers, status_code=exc.status_code)


async def server_error(request: Request, exc: Exception) -> Response:
    return error_response(TaskHubError("internal", "internal error"))


class BodyLimit:
    """Request bodies over the payload limit get 413 `payload_too_large` before they are read whole.

    A Content-Length over the limit is refused before a byte is read; a body without one
    (chunked) is counted as it streams in, and the first chunk past the limit ends it: the
    route reading it gets the error from `receive`, and `edge` answers it.
    """

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await error_response(payload_too_large(self.limit))(scope, receive, send)
                return
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise payload_too_large(self.limit)
            return message

        started = False

        async def sending(message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except TaskHubError as error:  # a route that read its body outside `edge`
            if started or error.code != "payload_too_large":
                raise
            await error_response(error)(scope, receive, send)


class TrimSlashes:
    """`/tasks/` is `/tasks`, as Meilisearch's NormalizePath(Trim) makes it; `//` is `/`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            trimmed = "/" + "/".join(part for part in path.split("/") if part)
            if trimmed != path:
                scope = dict(scope, path=trimmed)
        await self.app(scope, receive, send)


async def tasks(request: Request) -> Response:
    # One route for the three methods of `/tasks`, so a 405 lists all of them in `Allow`.
    handler = {"POST": enqueue_task, "DELETE": delete_tasks}.get(request.method, list_tasks)
    return await handler(request)


ROUTES = [
    Route("/tasks", tasks, methods=["GET", "POST", "DELETE"]),
    Route("/tasks/cancel", cancel_tasks, methods=["POST"]),
    Route("/tasks/requeue", requeue_tasks, methods=["POST"]),
    # Before `/tasks/{uid}`, which would answer `invalid_task_uids` for `events`.
    Route("/tasks/events", watch_tasks, methods=["GET"]),
    Route("/tasks/{uid}", get_task, methods=["GET"]),
    *keys.routes(edge, _metadata),
    *batches.routes(edge, _metadata),
    *metrics.routes(edge, _metadata),
    *operations.routes(edge, _metadata),
    *webhooks.routes(edge, _metadata),
    Route("/tasks/{uid}/events", watch_task, methods=["GET"]),
    Route("/dumps", create_dump, methods=["POST"]),
    Route("/snapshots", create_snapshot, methods=["POST"]),
    Route("/version", get_version, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    *dashboard.routes(),
]


def create_app(
    grpc_target: str,
    *,
    timeout: float = 30.0,
    heartbeat: float = events.HEARTBEAT,
    allowed_hosts: Sequence[str] | None = None,
    allowed_origins: Sequence[str] = (),
    payload_limit: int = limits.DEFAULT_PAYLOAD_LIMIT,
    credentials: grpc.ChannelCredentials | None = None,
    watch_token: str | None = None,
    max_watchers_per_client: int = 500,
) -> Starlette:
    """The gateway in front of the gRPC server at `grpc_target` (over TLS with `credentials`).

    A request body over `payload_limit` bytes is refused with 413 `payload_too_large`.

    `timeout` bounds each call (and the opening of a watch); an event stream sends a
    comment after `heartbeat` seconds without an event. `app.state.watches.close()`
    ends the open event streams (the gateway's shutdown calls it). `allowed_hosts` and
    `allowed_origins` go to the cross-site guard (`guard.Guard`; None: no Host check).
    An HTTP client holds at most `max_watchers_per_client` streams; `watch_token` comes from a
    server that trusts this gateway to count them so, rather than all as its one connection.
    """
    backend = Backend(grpc_target, timeout, payload_limit, credentials, watch_token)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        backend.open()
        try:
            yield
        finally:
            await backend.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(metrics.Timing, routes=ROUTES),
            Middleware(Guard, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins),
            Middleware(TrimSlashes),
            Middleware(BodyLimit, limit=payload_limit),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.backend = backend
    app.state.watches = events.Watches(heartbeat, per_client=max_watchers_per_client)
    app.state.metrics = metrics.GatewayMetrics(app.state.watches)
    return app
