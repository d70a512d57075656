"""`GET /leases` and `GET /activity`: the workers in view, from OperationsService (taskhub extensions).

`/leases` answers which worker holds which tasks, since and until when (the oldest 100, `?limit=` up to
1000, and their `total`); `/activity` the tasks finished
each second by status over the last minutes (15 by default, `?seconds=` up to an hour) and each index's
tasks by status. Both need `tasks.get`; a scoped key sees its indexes' tasks alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskhub.errors import TaskHubError
from taskhub.gateway import query
from taskhub.gateway.render import date
from taskhub.v1 import operations_service_pb2 as opb, operations_service_pb2_grpc

Handler = Callable[[Request], Awaitable[Response]]
Metadata = Callable[[Request], tuple[tuple[str, str], ...]]
STATUSES = ("enqueued", "processing", "succeeded", "failed", "canceled")


def lease(message: opb.HeldLease) -> dict:
    return {
        "worker": message.worker,
        "batchUid": message.batch_uid if message.HasField("batch_uid") else None,
        "since": date(message.since),
        "deadline": date(message.deadline),
        "tasks": [
            {
                "uid": task.uid,
                "indexUid": task.index_uid if task.HasField("index_uid") else None,
                "type": task.type_name,
                "attempts": task.attempts if task.HasField("attempts") else 0,
            }
            for task in message.tasks
        ],
    }


def activity(message: opb.GetActivityResponse) -> dict:
    return {
        "since": date(message.since),
        "seconds": len(message.succeeded),
        "finished": {
            "succeeded": list(message.succeeded),
            "failed": list(message.failed),
            "canceled": list(message.canceled),
        },
        "indexes": [
            {
                "indexUid": counts.index_uid if counts.HasField("index_uid") else None,
                "statuses": {status: getattr(counts, status) for status in STATUSES},
            }
            for counts in message.indexes
        ],
    }


def _one_number(raw: str, name: str, code: str) -> int | None:
    """The one parameter a route takes, a u32, or None when absent; anything else is refused."""
    number = None
    for key, value in query.parameters(raw).items():
        if key != name:
            raise TaskHubError("bad_request", f"Unknown parameter `{key}`: expected one of `{name}`")
        number = query.parse_uint(value)
        if number is None:
            raise TaskHubError(
                code, f"Invalid value in parameter `{name}`: could not parse `{value}` as a positive integer"
            )
    return number


def leases_request(raw: str) -> opb.ListLeasesRequest:
    return opb.ListLeasesRequest(limit=_one_number(raw, "limit", "invalid_lease_limit"))


def activity_request(raw: str) -> opb.GetActivityRequest:
    return opb.GetActivityRequest(seconds=_one_number(raw, "seconds", "invalid_activity_seconds"))


def routes(edge: Callable[[Handler], Handler], metadata: Metadata) -> list[Route]:
    """`/leases` and `/activity`; `app` lends its error edge and credential forwarding."""

    async def list_leases(request: Request) -> Response:
        backend = request.app.state.backend
        message = leases_request(request.scope.get("query_string", b"").decode("utf-8", "replace"))
        stub = backend.stub(operations_service_pb2_grpc.OperationsServiceStub)
        response = await stub.ListLeases(message, timeout=backend.timeout, metadata=metadata(request))
        return JSONResponse({"results": [lease(held) for held in response.leases], "total": response.total})

    async def get_activity(request: Request) -> Response:
        backend = request.app.state.backend
        message = activity_request(request.scope.get("query_string", b"").decode("utf-8", "replace"))
        stub = backend.stub(operations_service_pb2_grpc.OperationsServiceStub)
        response = await stub.GetActivity(message, timeout=backend.timeout, metadata=metadata(request))
        return JSONResponse(activity(response))

    return [
        Route("/leases", edge(list_leases), methods=["GET"]),
        Route("/activity", edge(get_activity), methods=["GET"]),
    ]
