"""The gRPC OperationsService: the leases held, the tasks finished lately and the tasks per index."""

from __future__ import annotations

from taskhub.server.edge import convert
from taskhub.server.edge.services import authorization, error_edge
from taskhub.server.model import TaskStatus
from taskhub.server.rules import operations
from taskhub.server.rules.auth import Keyring
from taskhub.server.rules.scheduler import Scheduler
from taskhub.v1 import operations_service_pb2 as opb, operations_service_pb2_grpc

# The statuses of `IndexCounts`, by field name.
COUNTED = {status.name.lower(): status for status in TaskStatus}


class OperationsService(operations_service_pb2_grpc.OperationsServiceServicer):
    """`taskhub.v1.OperationsService` over a scheduler's reads; `tasks.get`, within the key's indexes."""

    def __init__(self, scheduler: Scheduler, keys: Keyring) -> None:
        self.scheduler = scheduler
        self.keys = keys

    async def ListLeases(self, request: opb.ListLeasesRequest, context) -> opb.ListLeasesResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.get")
            limit = operations.lease_limit(request.limit if request.HasField("limit") else None)
            leases = await self.scheduler.read(operations.held_leases, principal.scope)
            return opb.ListLeasesResponse(leases=[_lease(lease) for lease in leases[:limit]], total=len(leases))

    async def GetActivity(self, request: opb.GetActivityRequest, context) -> opb.GetActivityResponse:
        async with error_edge(context):
            principal = self.keys.require(authorization(context), "tasks.get")
            seconds = operations.window(request.seconds if request.HasField("seconds") else None)
            finder, now = self.scheduler.units.finder, self.scheduler.clock()
            # On the read thread: at a busy queue the window holds many tasks to count.
            found = await self.scheduler.read(lambda _: operations.activity(finder, now, seconds, principal.scope))
            return _activity(found, seconds)


def _lease(lease: operations.HeldLease) -> opb.HeldLease:
    message = opb.HeldLease(
        worker=lease.worker,
        since=convert.timestamp(lease.since),
        deadline=convert.timestamp(lease.deadline),
        tasks=[
            opb.LeasedTask(
                uid=task.uid,
                index_uid=task.index_uid,
                type_name=task.type.label,
                attempts=(task.extra or {}).get("attempts"),
            )
            for task in lease.tasks
        ],
    )
    if lease.batch_uid is not None:
        message.batch_uid = lease.batch_uid
    return message


def _activity(found: operations.Activity, seconds: int) -> opb.GetActivityResponse:
    none = [0] * seconds
    message = opb.GetActivityResponse(
        since=convert.timestamp(found.since),
        succeeded=found.finished.get(TaskStatus.SUCCEEDED, none),
        failed=found.finished.get(TaskStatus.FAILED, none),
        canceled=found.finished.get(TaskStatus.CANCELED, none),
    )
    # By index uid, the global tasks last.
    for index_uid in sorted(found.indexes, key=lambda name: (name is None, name or "")):
        counts = found.indexes[index_uid]
        message.indexes.append(
            opb.IndexCounts(index_uid=index_uid, **{field: counts.get(status, 0) for field, status in COUNTED.items()})
        )
    return message
