"""Batch rows as both stores keep them: the columns, the counts and details as JSON, their decoding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from taskhub.server.batch import Batch, ProgressStep
from taskhub.server.model import STATUS_BY_LABEL, TaskKind
from taskhub.server.storage.rows import compact, loads

COLUMNS = (
    "uid, started_at, finished_at, enqueued_first, enqueued_last, index_uid, lease, worker, lease_state,"
    " strategy, stats, details"
)
# What a batch costs in a page beside its counts and details, as an upper bound.
ROW_BYTES = 512


def status_mask(batch: Batch) -> int:
    return sum(1 << int(s) for s, n in batch.statuses.items() if n)


def stats_json(batch: Batch) -> str:
    return compact(
        {
            "total": batch.total,
            "status": {s.label: n for s, n in batch.statuses.items()},
            "types": {t.label: n for t, n in batch.types.items()},
            "indexUids": batch.index_uids,
        }
    )


def row_to_batch(row: Sequence[Any], progress: str | None, kind_of: Callable[[str], TaskKind]) -> Batch:
    uid, started, finished, first, last, index_uid, lease, worker, state, strategy, stats, details = row
    counts = loads(stats)
    steps = None
    if finished is None:
        steps = [] if progress is None else [ProgressStep(*s) for s in loads(progress)]
    return Batch(
        uid=uid,
        started_at=started,
        strategy=strategy,
        total=counts["total"],
        statuses={STATUS_BY_LABEL[k]: v for k, v in counts["status"].items()},
        types={kind_of(k): v for k, v in counts["types"].items()},
        index_uids=counts["indexUids"],
        details=loads(details),
        enqueued_first=first,
        enqueued_last=last,
        index_uid=index_uid,
        finished_at=finished,
        progress=steps,
        lease=lease,
        worker=worker,
        lease_state=state,
    )
