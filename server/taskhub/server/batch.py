"""Batches: what one lease, or one server-run task, processed together (Meilisearch's batch object).

Plain domain objects beside `model`: the batch, a worker's progress steps, and the query over
batches. A batch's `details` and counts use Meilisearch's keys; times are microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taskhub.server.model import Scope, TaskKind, TaskStatus

# A lease batch's `lease_state`: the lease's own state (storage.contract.ACTIVE or why it ended).
LEASE_STATES = ("active", "completed", "expired", "released", "canceled", "lost")
# Limits on a worker's progress report, checked before anything is written.
MAX_STEPS = 16
MAX_STEP_NAME_BYTES = 256


@dataclass(slots=True)
class ProgressStep:
    """One level of a worker's progress: Meilisearch's `currentStep`, `finished` of `total`."""

    name: str
    finished: int
    total: int


def percentage(steps: list[ProgressStep]) -> float:
    """Meilisearch's formula: each level's fraction scaled by the totals of the levels above it."""
    done, scale = 0.0, 1
    for step in steps:
        scale *= step.total
        done += step.finished / scale
    return 100.0 * done


def progress_problem(steps: list[ProgressStep]) -> str | None:
    """Why a progress report is refused, or None when it is acceptable."""
    if len(steps) > MAX_STEPS:
        return f"A progress report holds at most {MAX_STEPS} steps, not {len(steps)}."
    for step in steps:
        size = len(step.name.encode())
        if not 1 <= size <= MAX_STEP_NAME_BYTES:
            return f"A progress step's name takes 1 to {MAX_STEP_NAME_BYTES} bytes, not {size}."
        if step.total < 1:
            return f"The step `{step.name}` has a total of {step.total}; it must be at least 1."
        if not 0 <= step.finished <= step.total:
            return (
                f"The step `{step.name}` finished {step.finished} of {step.total}; it must be between 0 and its total."
            )
    return None


@dataclass(slots=True)
class Batch:
    """One batch as stored. `statuses`, `types`, `index_uids` are Meilisearch's `stats` counts."""

    uid: int
    started_at: int
    strategy: str
    total: int
    statuses: dict[TaskStatus, int]
    types: dict[TaskKind, int]
    index_uids: dict[str, int]
    details: dict
    # The oldest and newest `enqueuedAt` of its tasks: an enqueued-date bound matches either.
    enqueued_first: int
    enqueued_last: int
    # Its one index when every task it holds has that index, else None (scoped keys, `indexUids`).
    index_uid: str | None
    finished_at: int | None = None
    # While it runs: the last steps a worker reported ([] before any); None once ended.
    progress: list[ProgressStep] | None = None
    lease: str | None = None
    worker: str | None = None
    lease_state: str | None = None

    @property
    def duration(self) -> int | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(slots=True)
class BatchQuery:
    """A filter over batches: one matches when it holds a task matching each set field (Meilisearch's rule).

    `task_uids` are task uids (`uids` on the wire); dates on enqueue test the batch's oldest or newest
    task; started and finished dates are the batch's own. Bounds are exclusive.
    """

    batch_uids: frozenset[int] | None = None
    task_uids: frozenset[int] | None = None
    index_uids: frozenset[str] | None = None
    statuses: frozenset[TaskStatus] | None = None
    types: frozenset[TaskKind] | None = None
    before_enqueued_at: int | None = None
    after_enqueued_at: int | None = None
    before_started_at: int | None = None
    after_started_at: int | None = None
    before_finished_at: int | None = None
    after_finished_at: int | None = None
    scope: Scope | None = field(default=None, compare=False)

    def matches(self, batch: Batch, task_uids: set[int]) -> bool:
        """The finder's rule in Python (the contract tests' oracle); `task_uids`: the tasks it held."""
        if self.scope is not None and not self.scope.allows(batch.index_uid):
            return False
        if self.batch_uids is not None and batch.uid not in self.batch_uids:
            return False
        if self.task_uids is not None and not task_uids & self.task_uids:
            return False
        if self.index_uids is not None and batch.index_uid not in self.index_uids:
            return False
        if self.statuses is not None and not set(batch.statuses) & self.statuses:
            return False
        if self.types is not None and not set(batch.types) & self.types:
            return False
        before, after = self.before_enqueued_at, self.after_enqueued_at
        if (before is not None or after is not None) and not any(
            (before is None or d < before) and (after is None or d > after)
            for d in (batch.enqueued_first, batch.enqueued_last)
        ):
            return False
        for bound, value, before in (
            (self.before_started_at, batch.started_at, True),
            (self.after_started_at, batch.started_at, False),
            (self.before_finished_at, batch.finished_at, True),
            (self.after_finished_at, batch.finished_at, False),
        ):
            if bound is not None and (value is None or (value >= bound if before else value <= bound)):
                return False
        return True
