"""Planner statistics for the task table: gathered when PostgreSQL has none, and after a bulk load.

Rows are read by uid pages (the index's build at start), by the partial indexes (tasks waiting
for a runAt, leased tasks) and by uid lists. With no statistics at all (a table filled faster
than autovacuum's first pass, or by an import) the planner guesses a third of the rows match
`uid > $1` and that most rows have a runAt or a lease, and reads the whole table for each of
those; with statistics, even old ones, it takes the indexes (the table's current size is read
at plan time and the key's range from the index itself). So: ANALYZE when the table was never
analyzed (at start), and after an import.
"""

from __future__ import annotations

from taskhub.server.storage.postgres.connection import Connection


def analyze_if_unknown(conn: Connection) -> bool:
    """ANALYZE the task table if PostgreSQL has never gathered its statistics; answers whether it did."""
    row = conn.execute(
        "SELECT c.reltuples < 0 AND EXISTS (SELECT 1 FROM tasks) FROM pg_class c WHERE c.oid = 'tasks'::regclass"
    ).fetchone()
    if row is None or not row[0]:
        return False
    analyze(conn)
    return True


def analyze(conn: Connection) -> None:
    """Fresh statistics of the task table (a sample of its rows: a fraction of a second at millions of rows)."""
    conn.execute("ANALYZE tasks")
