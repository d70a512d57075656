"""Batches between the domain and the protos: a batch out, a worker's progress report in."""

from __future__ import annotations

import json

from taskhub.server.batch import Batch, ProgressStep, percentage
from taskhub.server.edge.convert import timestamp
from taskhub.server.model import TaskType
from taskhub.server.rules.batches import BatchPage
from taskhub.v1 import batch_pb2, task_service_pb2

compact = json.JSONEncoder(separators=(",", ":")).encode

LEASE_STATES = {
    "active": batch_pb2.LEASE_STATE_ACTIVE,
    "completed": batch_pb2.LEASE_STATE_COMPLETED,
    "expired": batch_pb2.LEASE_STATE_EXPIRED,
    "released": batch_pb2.LEASE_STATE_RELEASED,
    "canceled": batch_pb2.LEASE_STATE_CANCELED,
    "lost": batch_pb2.LEASE_STATE_LOST,
}


def fill_batch(message: batch_pb2.Batch, batch: Batch) -> None:
    """Writes `batch` into an empty message in place."""
    message.uid = batch.uid
    if batch.progress is not None:
        for step in batch.progress:
            message.progress.steps.add(current_step=step.name, finished=step.finished, total=step.total)
        message.progress.percentage = percentage(batch.progress)
        message.progress.SetInParent()  # set even before any report: a running batch shows its progress
    message.details_json = compact(batch.details)
    stats = message.stats
    stats.total_nb_tasks = batch.total
    for status, count in sorted(batch.statuses.items()):
        stats.status.add(status=status, count=count)
    for type_, count in sorted(batch.types.items()):
        # A registered type's code is no `TaskType`: its name alone says it, as on a task.
        stats.types.add(type=type_ if isinstance(type_, TaskType) else 0, count=count, type_name=type_.label)
    for index_uid, count in batch.index_uids.items():
        stats.index_uids[index_uid] = count
    message.started_at.CopyFrom(timestamp(batch.started_at))
    duration = batch.duration
    if batch.finished_at is not None and duration is not None:
        message.finished_at.CopyFrom(timestamp(batch.finished_at))
        seconds, rest = divmod(abs(duration), 1_000_000)
        sign = -1 if duration < 0 else 1
        message.duration.seconds, message.duration.nanos = sign * seconds, sign * rest * 1_000
    message.batch_strategy = batch.strategy
    if batch.lease is not None:
        message.lease.worker = batch.worker or ""
        message.lease.state = LEASE_STATES.get(batch.lease_state or "", batch_pb2.LEASE_STATE_UNSPECIFIED)


def batch_page_to_proto(page: BatchPage) -> task_service_pb2.ListBatchesResponse:
    message = task_service_pb2.ListBatchesResponse(total=page.total, limit=page.limit)
    for batch in page.results:
        fill_batch(message.results.add(), batch)
    if page.from_uid is not None:
        setattr(message, "from", page.from_uid)  # `from` is a Python keyword
    if page.next_uid is not None:
        message.next = page.next_uid
    return message


def progress_from_proto(message: batch_pb2.BatchProgress) -> list[ProgressStep]:
    """The steps of a report, unchecked (the rules check them); `percentage` is the server's to compute."""
    return [ProgressStep(s.current_step, s.finished, s.total) for s in message.steps]
