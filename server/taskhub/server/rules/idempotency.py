"""Idempotent enqueue: one key, one set of tasks, however often the request comes.

An enqueue that carries a key (`Idempotency-Key`, `idempotency_key`) is a `Claim`: the key, named
with its caller (keys are scoped per API key), and a digest of the request as the rules see it once
checked (every item's index, type, details and extra fields, and whether it came as a batch).
In the unit of work that inserts, `settle` looks the key up: unknown or expired, the tasks are
inserted and the key recorded with their uids; known with the same request, the first answer is
given again and nothing is inserted; known with another request, `idempotency_key_conflict`.
Being one unit of work, two processes racing one key make one set of tasks (the storage's units
are serializable). Records older than the TTL count as absent and are pruned with the oldest past
the cap by the scheduler's tick.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from taskhub.errors import TaskHubError
from taskhub.server.model import Task, TaskStatus
from taskhub.server.rules.auth import Principal
from taskhub.server.storage.contract import IdempotencyRecord, NewTask, Transaction

MAX_KEY_BYTES = 256
DEFAULT_TTL = 24 * 3_600 * 1_000_000  # microseconds
DEFAULT_MAX_KEYS = 1_000_000
# The extra field of the enqueuer's trace context (edge/tracing.py).
TRACE_CONTEXT = "traceContext"


@dataclass(frozen=True, slots=True)
class Claim:
    """An enqueue's idempotency key and request, as digests."""

    key: bytes
    request: bytes


def check_key(key: str) -> None:
    """A key is 1 to MAX_KEY_BYTES bytes of UTF-8; anything else is refused with its own code."""
    if not key:
        raise TaskHubError("invalid_idempotency_key", "The idempotency key is empty: give 1 to 256 bytes, or none.")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise TaskHubError(
            "invalid_idempotency_key", f"The idempotency key is at most {MAX_KEY_BYTES} bytes (UTF-8), not {size}."
        )


def claim(key: str, caller: Principal, items: list[NewTask], *, batch: bool) -> Claim:
    """The claim of checked `items` under `key`, for `caller`: its API key's uid, or one scope for the master
    key (and for everyone when keys are off: a server has one or the other)."""
    check_key(key)
    owner = caller.key_uid or ""
    # Stored as a digest: a change to this encoding makes keys used before it conflict until they expire.
    # A type is written as its number (an int enum); sorted keys: the same JSON object written in another order
    # is the same request; `str` for any value JSON lacks.
    # The trace context is the caller's, not the request's: a retry from another trace is the same request.
    text = json.dumps([batch, [_traceless(item) for item in items]], sort_keys=True, separators=(",", ":"), default=str)
    return Claim(
        key=hashlib.sha256(owner.encode() + b"\0" + key.encode("utf-8", "surrogatepass")).digest(),
        request=hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest(),
    )


def conflict() -> TaskHubError:
    return TaskHubError(
        "idempotency_key_conflict",
        "This idempotency key was already used with another request; use a new key for a new request.",
    )


def settle(
    tx: Transaction,
    entries: list[tuple[list[NewTask], Claim | None]],
    now: int,
    ttl: int,
    before_insert: Callable[[], None],
) -> list[list[Task] | TaskHubError]:
    """In one unit of work: inserts the entries whose key is new, answers the others; one answer per entry.

    `before_insert` runs when there is something to insert (the queue-full check): replays alone
    store nothing, so a full queue still answers them.

    Each entry's tasks get consecutive uids, in the order given, in one insert. A replay answers
    the first call's summaries (uids, enqueue time) built from the request, which is the same.
    """
    base = tx.tasks.next_uid()
    stored = tx.idempotency.get_keys([found.key for _, found in entries if found is not None])
    fresh: list[NewTask] = []
    records: dict[bytes, IdempotencyRecord] = {}
    plan: list[int | list[Task] | TaskHubError] = []  # where an entry's new tasks start, or its answer
    for items, found in entries:
        if found is not None:
            # A key taken earlier in this commit counts as stored: its record is written below.
            record = records.get(found.key) or stored.get(found.key)
            if record is not None and record.created_at > now - ttl:
                plan.append(conflict() if record.request != found.request else _replayed(items, record))
                continue
            records[found.key] = IdempotencyRecord(found.key, found.request, base + len(fresh), len(items), now)
        plan.append(len(fresh))
        fresh.extend(items)
    tasks: list[Task] = []
    if fresh:
        before_insert()
        tasks = tx.tasks.insert(fresh, now)
        tx.idempotency.put_keys(list(records.values()))
    answers: list[list[Task] | TaskHubError] = []
    for (items, _), step in zip(entries, plan, strict=True):
        answers.append(tasks[step : step + len(items)] if isinstance(step, int) else step)
    return answers


def _traceless(item: NewTask) -> NewTask:
    index_uid, type_, details, extra = item
    if extra and TRACE_CONTEXT in extra:
        extra = {k: v for k, v in extra.items() if k != TRACE_CONTEXT} or None
    return index_uid, type_, details, extra


def _replayed(items: list[NewTask], record: IdempotencyRecord) -> list[Task]:
    return [
        Task(
            uid=record.first_uid + position,
            index_uid=index_uid,
            status=TaskStatus.ENQUEUED,
            type=type_,
            enqueued_at=record.created_at,
            details=details,
            extra=extra,
        )
        for position, (index_uid, type_, details, extra) in enumerate(items)
    ]


def prune(tx: Transaction, now: int, ttl: int, max_keys: int) -> int:
    """Drops expired keys, then the oldest past `max_keys`; answers how many went."""
    return tx.idempotency.prune_keys(now - ttl, max_keys)
