"""Batches as Python values: what one lease, or one task the server ran, processed together.

`Batch.to_dict()` is Meilisearch's batch object as GET /batches/{uid} answers it (keys in its order,
`stats` keys in its status and `Kind` orders), with taskhub's `lease` last on lease batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskhub.client.models import STATUS_FROM_PROTO, TYPE_FROM_PROTO, _show, _time, format_duration
from taskhub.v1 import batch_pb2, task_service_pb2

# Meilisearch's `Kind` declaration order, which its map of types follows.
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
LEASE_STATES = {
    v.number: v.name.removeprefix("LEASE_STATE_").lower() for v in batch_pb2.LeaseState.DESCRIPTOR.values if v.number
}


@dataclass(frozen=True, slots=True)
class ProgressStep:
    """One level of a worker's progress: `finished` of `total` units of `name`."""

    name: str
    finished: int
    total: int


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch; `status`, `types` and `index_uids` count its tasks (Meilisearch's `stats`)."""

    uid: int
    progress: list[ProgressStep] | None
    percentage: float | None
    details: dict[str, Any]
    total_tasks: int
    status: dict[str, int]
    types: dict[str, int]
    index_uids: dict[str, int]
    duration: timedelta | None
    started_at: datetime
    finished_at: datetime | None
    strategy: str
    worker: str | None = None
    lease_state: str | None = None

    @classmethod
    def from_proto(cls, message: batch_pb2.Batch) -> Batch:
        stats = message.stats
        duration = None
        if message.HasField("duration"):
            duration = timedelta(seconds=message.duration.seconds, microseconds=message.duration.nanos // 1_000)
        running = message.HasField("progress")
        types = sorted(
            ((c.type_name or TYPE_FROM_PROTO[c.type].value, c.count) for c in stats.types),
            key=lambda pair: (_KIND_RANK.get(pair[0], len(_KIND_RANK)), pair[0]),
        )
        started = _time(message, "started_at")
        assert started is not None
        return cls(
            uid=message.uid,
            progress=[ProgressStep(s.current_step, s.finished, s.total) for s in message.progress.steps]
            if running
            else None,
            percentage=message.progress.percentage if running else None,
            details=json.loads(message.details_json) if message.details_json else {},
            total_tasks=stats.total_nb_tasks,
            status={STATUS_FROM_PROTO[c.status].value: c.count for c in sorted(stats.status, key=lambda c: c.status)},
            types=dict(types),
            index_uids={k: stats.index_uids[k] for k in sorted(stats.index_uids, key=lambda k: k.encode())},
            duration=duration,
            started_at=started,
            finished_at=_time(message, "finished_at"),
            strategy=message.batch_strategy,
            worker=message.lease.worker if message.HasField("lease") else None,
            lease_state=LEASE_STATES.get(message.lease.state) if message.HasField("lease") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Meilisearch's batch object, as GET /batches/{uid} answers it."""
        body: dict[str, Any] = {
            "uid": self.uid,
            "progress": None
            if self.progress is None
            else {
                "steps": [{"currentStep": s.name, "finished": s.finished, "total": s.total} for s in self.progress],
                "percentage": self.percentage,
            },
            "details": self.details,
            "stats": {
                "totalNbTasks": self.total_tasks,
                "status": self.status,
                "types": self.types,
                "indexUids": self.index_uids,
            },
            "duration": None if self.duration is None else format_duration(self.duration),
            "startedAt": _show(self.started_at),
            "finishedAt": _show(self.finished_at),
            "batchStrategy": self.strategy,
        }
        if self.lease_state is not None:
            body["lease"] = {"worker": self.worker, "state": self.lease_state}
        return body


@dataclass(frozen=True, slots=True)
class BatchPage:
    """One page of batches; `next` is the `from_` of the next page, None on the last."""

    results: list[Batch]
    total: int
    limit: int
    from_: int | None
    next: int | None

    @classmethod
    def from_proto(cls, message: task_service_pb2.ListBatchesResponse) -> BatchPage:
        return cls(
            results=[Batch.from_proto(b) for b in message.results],
            total=message.total,
            limit=message.limit,
            from_=getattr(message, "from") if message.HasField("from") else None,
            next=message.next if message.HasField("next") else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """GET /batches's answer: `{results, total, limit, from, next}`."""
        return {
            "results": [b.to_dict() for b in self.results],
            "total": self.total,
            "limit": self.limit,
            "from": self.from_,
            "next": self.next,
        }
