"""The SQLite schema, created on first open and migrated forward by `PRAGMA user_version`."""

from __future__ import annotations

import secrets
import sqlite3

import sqlite_utils

SCHEMA_VERSION = 11


def migrate(conn: sqlite3.Connection) -> None:
    """Brings the database to SCHEMA_VERSION; the caller holds a write transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    if version == 0:
        _create_tables(conn)
    if version < 2:
        # Version 1 indexed eight task columns; the index answers those now, and each SQL
        # index made every enqueue write more pages. Only leases are found by SQL.
        for name in (
            "status_uid",
            "type_status",
            "index_uid_uid",
            "canceled_by",
            "enqueued_at",
            "started_at",
            "finished_at",
            "lease",
        ):
            conn.execute(f"DROP INDEX IF EXISTS idx_tasks_{name}")
        # Partial: a task is in it only while leased, so an enqueue never touches it.
        conn.execute("CREATE INDEX idx_tasks_leased ON tasks (lease) WHERE lease IS NOT NULL")
    if version < 3:
        # Version 3 counts the change log's bytes, for its byte budget: once here, then as it goes.
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) SELECT 'change_bytes', COALESCE(SUM(length(task)), 0)"
            " FROM changes"
        )
    if version < 4:
        # Version 4 names the database's history, so a saved index is never applied to another one.
        new_epoch(conn)
    if version < 5:
        # Version 5 keeps the fields beyond Meilisearch's (customMetadata, runAt, batchUid, ...) as one JSON object.
        add_column(conn, "tasks", "extra", "TEXT")
    if version < 6:
        _create_batches(conn)
    if version < 7:
        # Version 7 gives each task type registered at the server (`--task-types`) its stored code, once.
        conn.execute("CREATE TABLE IF NOT EXISTS task_types (code INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    if version < 9:
        # Version 9 keeps idempotency keys (digests of caller and key) with the tasks their first enqueue made;
        # without rowid: the key is the table's one B-tree, so an enqueue writes two (with created_at's), not three.
        conn.execute(
            "CREATE TABLE IF NOT EXISTS idempotency_keys (key BLOB PRIMARY KEY, request BLOB NOT NULL,"
            " first_uid INTEGER NOT NULL, count INTEGER NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS idx_idempotency_created ON idempotency_keys (created_at)")
    if version < 10:
        # Version 10 delays tasks (runAt, retries' backoff): `run_at` is set only while a task waits enqueued with
        # one, so the partial index holds those alone and a start finds them without reading every row.
        add_column(conn, "tasks", "run_at", "INTEGER")
        conn.execute("CREATE INDEX IF NOT EXISTS idx_tasks_waiting ON tasks (run_at) WHERE run_at IS NOT NULL")
        # Attempts are counted in the extra fields now, where a task shows them; unfinished tasks keep theirs.
        conn.execute(
            "UPDATE tasks SET extra = json_set(COALESCE(extra, '{}'), '$.attempts', attempts)"
            " WHERE attempts > 0 AND status IN (1, 2)"
        )
    if version < 11:
        create_webhooks(conn)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _create_batches(conn: sqlite3.Connection) -> None:
    """Version 6 keeps batches: what each lease or server-run task processed, and which tasks each held."""
    add_column(conn, "leases", "batch_uid", "INTEGER")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS batches (uid INTEGER PRIMARY KEY, started_at INTEGER NOT NULL,"
        " finished_at INTEGER, enqueued_first INTEGER NOT NULL, enqueued_last INTEGER NOT NULL, index_uid TEXT,"
        # A bit (1 << status) per status its tasks are in: a status filter reads no JSON.
        " statuses INTEGER NOT NULL, lease TEXT, worker TEXT, lease_state TEXT, strategy TEXT NOT NULL,"
        " stats TEXT NOT NULL, details TEXT NOT NULL)"
    )
    # No index but the uid: every one is a page more to write per lease, and listing batches, an observer's
    # route, scans the rows (types are read from `stats`). The start finds open batches by a scan too.
    conn.execute(
        "CREATE TABLE IF NOT EXISTS batch_tasks (batch_uid INTEGER NOT NULL, task_uid INTEGER NOT NULL,"
        " PRIMARY KEY (batch_uid, task_uid)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS idx_batch_tasks_task ON batch_tasks (task_uid)")
    # A narrow row: a renewal with progress rewrites it alone, never the batch's details.
    conn.execute("CREATE TABLE IF NOT EXISTS batch_progress (batch_uid INTEGER PRIMARY KEY, steps TEXT NOT NULL)")
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('next_batch_uid', 0), ('batch_count', 0)")


def create_webhooks(conn: sqlite3.Connection) -> None:
    """Version 11 keeps webhooks and their outbox: finished tasks by entry id, each webhook's progress a cursor
    (`delivered`, the last entry id it took), the last id given in meta."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS webhooks (uuid TEXT PRIMARY KEY, url TEXT NOT NULL, headers TEXT NOT NULL,"
        " secret TEXT, created_at INTEGER NOT NULL, delivered INTEGER NOT NULL, dropped INTEGER NOT NULL)"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS webhook_outbox (id INTEGER PRIMARY KEY, task_uid INTEGER NOT NULL)")
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('outbox_last', 0)")


def add_column(conn: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    """Adds a column unless the table has it (tests fake older versions by lowering `user_version` alone)."""
    if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def new_epoch(conn: sqlite3.Connection) -> None:
    """A history that does not continue the one before (a fresh database, an imported dump)."""
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?)", (secrets.randbits(62),))


def _create_tables(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    # `db.table(name)`, not `db[name]`: the same table, typed as a Table rather than "a table or a view".
    db.table("tasks").create(
        {
            "uid": int,
            "index_uid": str,
            "status": int,
            "type": int,
            "canceled_by": int,
            "details": str,
            "error": str,
            "enqueued_at": int,
            "started_at": int,
            "finished_at": int,
            "seq": int,
            "lease": str,
            "attempts": int,
        },
        pk="uid",
        not_null={"status", "type", "enqueued_at", "seq", "attempts"},
        defaults={"attempts": 0},
    )
    db.table("leases").create(
        {"token": str, "worker": str, "deadline": int, "duration": int, "state": str},
        pk="token",
        not_null={"deadline", "duration", "state"},
    )
    db.table("leases").create_index(["state", "deadline"])
    # The uids a cancelation or deletion matched when it was enqueued.
    db.table("matches").create({"uid": int, "uids": bytes}, pk="uid", not_null={"uids"})
    # Every committed change in sequence order, kept for watchers that resume and indexes that follow.
    db.table("changes").create(
        {"seq": int, "uid": int, "deleted": int, "task": str}, pk="seq", not_null={"uid", "deleted", "task"}
    )
    db.table("api_keys").create(
        {
            "uid": str,
            "name": str,
            "description": str,
            "actions": str,
            "indexes": str,
            "expires_at": int,
            "created_at": int,
            "updated_at": int,
        },
        pk="uid",
        not_null={"actions", "indexes", "created_at", "updated_at"},
    )
    db.table("meta").create({"key": str, "value": int}, pk="key", not_null={"value"})
    db.table("meta").insert_all(
        [{"key": "next_uid", "value": 0}, {"key": "last_seq", "value": 0}, {"key": "task_count", "value": 0}]
    )
