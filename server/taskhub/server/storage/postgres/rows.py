"""The counters in `meta` for the PostgreSQL tables; rows decode as SQLite's do (same columns, same JSON).

Inside a unit of work (`unit_counters`) the counters are read once, in the round trip that
opens the unit (`LOAD`), and bumped in memory; the ones that moved are written back by a
statement sent with the COMMIT (`write_back`). The unit holds UNIT_LOCK, so no other unit can
move them meanwhile: this saves a round trip (and the wake-ups that come with each) per bump,
several per unit. Whether any webhook is set is read along (`WEBHOOKS`), for the outbox's check
at every commit that finishes tasks. Outside a unit (readers) every read goes to the table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from taskhub.server.storage.postgres.connection import Connection

# The counters a unit keeps in memory; any other key of `meta` (epoch, schema_version) is always read anew.
COUNTERS = frozenset(
    {"next_uid", "last_seq", "task_count", "change_bytes", "stored_bytes", "next_batch_uid", "batch_count"}
)

# Not a counter: whether the webhooks table has a row (1 or 0), read with them and never written back.
WEBHOOKS = "~webhooks"
# What a unit reads first, after its lock, in the same round trip (no parameter: a simple query).
LOAD = (
    "SELECT key, value FROM meta WHERE key IN (" + ", ".join(f"'{key}'" for key in sorted(COUNTERS)) + ")"
    f" UNION ALL SELECT '{WEBHOOKS}', COUNT(*) FROM (SELECT 1 FROM webhooks LIMIT 1) AS w"
)


class _UnitCounters:
    """The counters of one open unit: their values (once read) and which ones moved."""

    def __init__(self, loaded: Iterable[tuple[str, int]] | None) -> None:
        self.values: dict[str, int] | None = None if loaded is None else {key: int(value) for key, value in loaded}
        self.moved: set[str] = set()

    def write_back(self) -> str:
        """The statement that writes the moved counters back ('' when none moved), to send with the COMMIT. The
        keys are COUNTERS' and the values integers: written in the text, so it needs no parameter."""
        if not self.moved or self.values is None:
            return ""
        keys = sorted(self.moved)
        cases = " ".join(f"WHEN '{key}' THEN {int(self.values[key])}" for key in keys)
        names = ", ".join(f"'{key}'" for key in keys)
        return f"UPDATE meta SET value = CASE key {cases} END WHERE key IN ({names}); "

    def load(self, conn: Connection) -> dict[str, int]:
        if self.values is None:
            self.values = {key: int(value) for key, value in conn.execute(LOAD)}
        return self.values


# The open unit's counters by connection (a storage's units run one at a time on its store thread).
_open: dict[int, _UnitCounters] = {}


@contextlib.contextmanager
def unit_counters(conn: Connection, loaded: Iterable[tuple[str, int]] | None = None) -> Iterator[_UnitCounters]:
    """Counters kept in memory for the block (a unit of work, under UNIT_LOCK), from `loaded` (LOAD's rows) or
    read on first use; the caller sends `write_back()` before its COMMIT."""
    if id(conn) in _open:
        raise RuntimeError("a unit of work inside a unit of work")
    unit = _open[id(conn)] = _UnitCounters(loaded)
    try:
        yield unit
    finally:
        del _open[id(conn)]


def webhooks_set(conn: Connection) -> bool | None:
    """Whether a webhook is set, as the open unit read it first (None: no unit open, or it changed them since)."""
    unit = _open.get(id(conn))
    if unit is None or unit.values is None or WEBHOOKS not in unit.values:
        return None
    return bool(unit.values[WEBHOOKS])


def webhooks_changed(conn: Connection) -> None:
    """The open unit set or deleted a webhook: `webhooks_set` reads the table again."""
    unit = _open.get(id(conn))
    if unit is not None and unit.values is not None:
        unit.values.pop(WEBHOOKS, None)


def bump(conn: Connection, key: str, by: int = 1) -> int:
    """Adds `by` to a counter in `meta` and answers its value before the addition."""
    unit = _open.get(id(conn))
    if unit is not None and key in COUNTERS:
        values = unit.load(conn)
        before = values[key]
        values[key] = before + by
        unit.moved.add(key)
        return before
    row = conn.execute("UPDATE meta SET value = value + %s WHERE key = %s RETURNING value", (by, key)).fetchone()
    assert row is not None, key
    return int(row[0]) - by


def set_counter(conn: Connection, key: str, value: int) -> None:
    """Sets a counter (an import's next uid)."""
    unit = _open.get(id(conn))
    if unit is not None and key in COUNTERS:
        unit.load(conn)[key] = value
        unit.moved.add(key)
        return
    conn.execute("UPDATE meta SET value = %s WHERE key = %s", (value, key))


def counter(conn: Connection, key: str) -> int:
    unit = _open.get(id(conn))
    if unit is not None and key in COUNTERS:
        return unit.load(conn)[key]
    row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
    assert row is not None, key
    return int(row[0])
