"""The counters in `meta` for the PostgreSQL tables; rows decode as SQLite's do (same columns, same JSON).

Inside a unit of work (`unit_counters`) the counters are read once, on first use, and bumped
in memory; the ones that moved are written back in one statement before the commit. The unit
holds UNIT_LOCK, so no other unit can move them meanwhile: this saves a round trip (and the
GIL handover that comes with each) per bump, several per unit. Outside a unit (readers) every
read goes to the table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from taskhub.server.storage.postgres.connection import Connection

# The counters a unit keeps in memory; any other key of `meta` (epoch, schema_version) is always read anew.
COUNTERS = frozenset(
    {"next_uid", "last_seq", "task_count", "change_bytes", "stored_bytes", "next_batch_uid", "batch_count"}
)


class _UnitCounters:
    """The counters of one open unit: their values (once read) and which ones moved."""

    def __init__(self) -> None:
        self.values: dict[str, int] | None = None
        self.moved: set[str] = set()

    def load(self, conn: Connection) -> dict[str, int]:
        if self.values is None:
            rows = conn.execute("SELECT key, value FROM meta WHERE key = ANY(%s)", (sorted(COUNTERS),)).fetchall()
            self.values = {key: int(value) for key, value in rows}
        return self.values


# The open unit's counters by connection (a storage's units run one at a time on its store thread).
_open: dict[int, _UnitCounters] = {}


@contextlib.contextmanager
def unit_counters(conn: Connection) -> Iterator[None]:
    """Counters kept in memory for the block (a unit of work, under UNIT_LOCK); written back if it ends well."""
    if id(conn) in _open:  # a unit inside a unit: the outer one writes them
        yield
        return
    unit = _open[id(conn)] = _UnitCounters()
    try:
        yield
        if unit.moved and unit.values is not None:
            keys = sorted(unit.moved)
            conn.execute(
                "UPDATE meta SET value = v.value FROM unnest(%s::text[], %s::bigint[]) AS v(key, value)"
                " WHERE meta.key = v.key",
                (keys, [unit.values[key] for key in keys]),
            )
    finally:
        del _open[id(conn)]


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
