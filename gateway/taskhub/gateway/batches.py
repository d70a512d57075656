"""`GET /batches` and `GET /batches/{uid}`: Meilisearch's batch objects, from TaskService.ListBatches/GetBatch.

Keys come in the order Meilisearch serializes them: `uid, progress, details, stats, duration, startedAt,
finishedAt, batchStrategy`; taskhub's `lease` (who ran it, and how its lease ended) last, only on lease batches.
`stats` keys: statuses in Meilisearch's status order, types in its `Kind` order, index uids in byte order.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskhub.errors import TaskHubError
from taskhub.gateway import query
from taskhub.gateway.render import STATUS_LABELS, TYPE_LABELS, date, duration
from taskhub.v1 import batch_pb2, task_service_pb2 as pb

Handler = Callable[[Request], Awaitable[Response]]
Metadata = Callable[[Request], tuple[tuple[str, str], ...]]

# Meilisearch's `Kind` declaration order, which its BTreeMap of types follows (not taskhub's TaskType order).
KIND_ORDER = (
    "documentAdditionOrUpdate",
    "documentEdition",
    "documentDeletion",
    "settingsUpdate",
    "indexCreation",
    "indexDeletion",
    "indexUpdate",
    "indexSwap",
    "taskCancelation",
    "taskDeletion",
    "dumpCreation",
    "snapshotCreation",
)
_KIND_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}
LEASE_STATE_LABELS = {
    v.number: v.name.removeprefix("LEASE_STATE_").lower() for v in batch_pb2.LeaseState.DESCRIPTOR.values if v.number
}


def progress(message: batch_pb2.BatchProgress) -> dict:
    return {
        "steps": [{"currentStep": s.current_step, "finished": s.finished, "total": s.total} for s in message.steps],
        "percentage": float(message.percentage),
    }


def details(text: str) -> dict:
    """The server's accumulated details, in its key order (Meilisearch's `DetailsView` order)."""
    return json.loads(text) if text else {}


def batch(message: batch_pb2.Batch) -> dict:
    stats = message.stats
    types = sorted(
        ((c.type_name or TYPE_LABELS.get(c.type, str(c.type)), c.count) for c in stats.types),
        key=lambda pair: (_KIND_RANK.get(pair[0], len(_KIND_RANK)), pair[0]),
    )
    body: dict = {
        "uid": message.uid,
        "progress": progress(message.progress) if message.HasField("progress") else None,
        "details": details(message.details_json),
        "stats": {
            "totalNbTasks": stats.total_nb_tasks,
            "status": {STATUS_LABELS.get(c.status): c.count for c in sorted(stats.status, key=lambda c: c.status)},
            "types": dict(types),
            "indexUids": {k: stats.index_uids[k] for k in sorted(stats.index_uids, key=lambda k: k.encode())},
        },
        "duration": duration(message.duration) if message.HasField("duration") else None,
        "startedAt": date(message.started_at),
        "finishedAt": date(message.finished_at) if message.HasField("finished_at") else None,
        "batchStrategy": message.batch_strategy,
    }
    if message.HasField("lease"):
        body["lease"] = {"worker": message.lease.worker, "state": LEASE_STATE_LABELS.get(message.lease.state)}
    return body


def batch_page(message: pb.ListBatchesResponse) -> dict:
    """`GET /batches`: `{results, total, limit, from, next}`."""
    return {
        "results": [batch(b) for b in message.results],
        "total": message.total,
        "limit": message.limit,
        "from": getattr(message, "from") if message.HasField("from") else None,
        "next": message.next if message.HasField("next") else None,
    }


def batch_uid(raw: str) -> int:
    uid = query.parse_uint(raw)
    if uid is None:
        raise TaskHubError(
            "invalid_batch_uids", f"Batch uid `{raw}` is invalid. It should only contain numeric characters."
        )
    return uid


def routes(edge: Callable[[Handler], Handler], metadata: Metadata) -> list[Route]:
    """`/batches` and `/batches/{uid}`; `app` lends its error edge and credential forwarding."""

    async def list_batches(request: Request) -> Response:
        backend = request.app.state.backend
        message = query.batches_request(request.scope.get("query_string", b"").decode("utf-8", "replace"))
        response = await backend.tasks.ListBatches(message, timeout=backend.timeout, metadata=metadata(request))
        return JSONResponse(batch_page(response))

    async def get_batch(request: Request) -> Response:
        backend = request.app.state.backend
        message = pb.GetBatchRequest(uid=batch_uid(request.path_params["uid"]))
        response = await backend.tasks.GetBatch(message, timeout=backend.timeout, metadata=metadata(request))
        return JSONResponse(batch(response.batch))

    return [
        Route("/batches", edge(list_batches), methods=["GET"]),
        Route("/batches/{uid}", edge(get_batch), methods=["GET"]),
    ]
