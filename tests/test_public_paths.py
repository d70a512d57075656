"""Tests move tasks along public paths only: enqueue, lease and complete, cancel and delete.

A test that wrote task states straight to storage, or through a unit of work of its own, could
make states production never reaches (a processing worker task with no lease); this rule keeps
them out of tests/, but for the tests of storage and the index themselves, which write rows of
any state on purpose (STORAGE_TESTS).
"""

from __future__ import annotations

import pathlib
import re

TESTS = pathlib.Path(__file__).parent
# A unit of work run by hand (the rules' `units.run`, a storage's `transaction()`), and the task
# table's writes; the old private entry points too, should they come back.
PRIVATE_WRITE = re.compile(
    r"\b_write(?:_first|_on)?\b|\bunits\.(?:run|_unit)\b|\.transaction\(\)"
    r"|\.tasks\.(?:insert|save|delete|load)\("
)
STORAGE_TESTS = {
    "test_store_schema.py",
    "test_task_index.py",
    "test_activity_index.py",
    "test_storage_contract.py",
    "test_storage_contract_batches.py",
    "test_change_log_budget.py",
    # Another process's commit, made through the storage contract as a second server would.
    "test_read_model.py",
    # Commits made while no server ran, and a database spoilt on purpose, under a saved index.
    "test_fast_start.py",
    # The PostgreSQL store beneath the rules: the plans of its statements, its lock's counters, its units'
    # bookkeeping (the size counter, a failing statement).
    "test_postgres_plans.py",
    "test_postgres_lock_times.py",
    "test_postgres_units.py",
}


def test_the_rule_sees_private_writes():
    """The pattern matches what it forbids, spelled the ways tests used to, and leaves public calls alone."""
    for line in (
        "await service.scheduler._write(service.store.start_task, 1, clock())",
        "await scheduler._write_first(fn)",
        "getattr(scheduler, '_write')",
        "await service.scheduler.units.run(fn, 1)",
        "with service.store.transaction() as tx:",
        "tx.tasks.save([task])",
    ):
        assert PRIVATE_WRITE.search(line), line
    for line in (
        "await service.scheduler.lease(worker='w')",
        "await service.scheduler.complete(token, {})",
        "store.tasks.get(4)",
        "monkeypatch.setattr(service.store.tasks, 'save', fail)",
        "self._writeOffset = 0",
    ):
        assert not PRIVATE_WRITE.search(line), line


def test_no_test_writes_through_the_schedulers_private_writes():
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == pathlib.Path(__file__) or path.name in STORAGE_TESTS or {"node_modules", ".venv"} & set(path.parts):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PRIVATE_WRITE.search(line):
                offenders.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert not offenders, (
        "tests must lease and complete through public paths (helpers.start/finish,"
        " WorkerService), not private writes:\n" + "\n".join(offenders)
    )
