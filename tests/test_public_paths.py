"""Tests move tasks along public paths only: enqueue, lease and complete, cancel and delete.

A test that wrote through the scheduler's private store writes could make states production
never reaches (a processing worker task with no lease); this rule keeps them out of tests/.
"""

from __future__ import annotations

import pathlib
import re

TESTS = pathlib.Path(__file__).parent
# The scheduler's private write entry points, and the store's state changes reached through a service.
PRIVATE_WRITE = re.compile(
    r"\b_write(?:_first|_on)?\b"
    r"|\b(?:service|scheduler)\.store\.(?:start_task|finish_task|run_cancelation|run_deletion|lease_batch"
    r"|complete_lease|insert_task|insert_matching_task)\b"
)


def test_the_rule_sees_private_writes():
    """The pattern matches what it forbids, spelled the ways tests used to, and leaves public calls alone."""
    for line in (
        "await service.scheduler._write(service.store.start_task, 1, clock())",
        "await scheduler._write_first(fn)",
        "getattr(scheduler, '_write')",
        "service.store.finish_task(1, 2, details=None)",
    ):
        assert PRIVATE_WRITE.search(line), line
    for line in (
        "await service.scheduler.lease(worker='w')",
        "await service.scheduler.complete(token, {})",
        "store.start_task(4, 2)",
        "self._writeOffset = 0",
    ):
        assert not PRIVATE_WRITE.search(line), line


def test_no_test_writes_through_the_schedulers_private_writes():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == pathlib.Path(__file__) or {"node_modules", ".venv"} & set(path.parts):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PRIVATE_WRITE.search(line):
                offenders.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert not offenders, (
        "tests must lease and complete through public paths (helpers.start/finish,"
        " WorkerService), not private writes:\n" + "\n".join(offenders)
    )
