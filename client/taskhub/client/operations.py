"""The workers in view, as the clients answer them: the leases held (`list_leases`) and the activity
(`get_activity`): tasks finished per second by status, and each index's tasks by status.

`to_dict()` gives what GET /leases and GET /activity answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskhub.client.models import _show, _time
from taskhub.v1 import operations_service_pb2 as opb

STATUSES = ("enqueued", "processing", "succeeded", "failed", "canceled")


@dataclass(frozen=True, slots=True)
class LeasedTask:
    uid: int
    index_uid: str | None
    type: str
    # How many of its attempts failed before this one.
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "indexUid": self.index_uid, "type": self.type, "attempts": self.attempts}


@dataclass(frozen=True, slots=True)
class HeldLease:
    """One worker's hold on one batch: since when, until when unless renewed, and its tasks."""

    worker: str
    batch_uid: int | None
    since: datetime
    deadline: datetime
    tasks: list[LeasedTask]

    @classmethod
    def from_proto(cls, message: opb.HeldLease) -> HeldLease:
        return cls(
            worker=message.worker,
            batch_uid=message.batch_uid if message.HasField("batch_uid") else None,
            since=_time(message, "since"),  # type: ignore[arg-type]  # always set by the server
            deadline=_time(message, "deadline"),  # type: ignore[arg-type]
            tasks=[
                LeasedTask(
                    uid=t.uid,
                    index_uid=t.index_uid if t.HasField("index_uid") else None,
                    type=t.type_name,
                    attempts=t.attempts if t.HasField("attempts") else 0,
                )
                for t in message.tasks
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "batchUid": self.batch_uid,
            "since": _show(self.since),
            "deadline": _show(self.deadline),
            "tasks": [t.to_dict() for t in self.tasks],
        }


@dataclass(frozen=True, slots=True)
class LeaseList:
    """The oldest leases held (up to the limit asked) and how many are held in all."""

    results: list[HeldLease]
    total: int

    @classmethod
    def from_proto(cls, message: opb.ListLeasesResponse) -> LeaseList:
        return cls([HeldLease.from_proto(m) for m in message.leases], message.total)

    def to_dict(self) -> dict[str, Any]:
        return {"results": [lease.to_dict() for lease in self.results], "total": self.total}


@dataclass(frozen=True, slots=True)
class Activity:
    """Tasks finished in each second from `since` on, by status, and each index's tasks by status
    (`None` for the global tasks)."""

    since: datetime
    finished: dict[str, list[int]]
    indexes: dict[str | None, dict[str, int]]

    @classmethod
    def from_proto(cls, message: opb.GetActivityResponse) -> Activity:
        return cls(
            since=_time(message, "since"),  # type: ignore[arg-type]  # always set by the server
            finished={s: list(getattr(message, s)) for s in ("succeeded", "failed", "canceled")},
            indexes={
                (c.index_uid if c.HasField("index_uid") else None): {s: getattr(c, s) for s in STATUSES}
                for c in message.indexes
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": _show(self.since),
            "seconds": len(self.finished["succeeded"]),
            "finished": self.finished,
            "indexes": [{"indexUid": name, "statuses": counts} for name, counts in self.indexes.items()],
        }
