"""The PostgreSQL schema, created on first open and migrated forward under an advisory lock.

Every server on the database may start at once (replicas): migrations run in a unit of
work, under its advisory lock, so the first to take the lock migrates and the others find the
version already there. Each step applies to a database at any lower version.
"""

from __future__ import annotations

import secrets

from taskhub.server.storage.postgres.connection import Connection

SCHEMA_VERSION = 3

# The key of the advisory lock every unit of work takes (and migrations): "taskhub" in ASCII.
UNIT_LOCK = 0x7461736B687562

_TABLES = """
CREATE TABLE tasks (
    uid bigint PRIMARY KEY,
    index_uid text,
    status smallint NOT NULL,
    type integer NOT NULL,
    canceled_by bigint,
    details text,
    error text,
    enqueued_at bigint NOT NULL,
    started_at bigint,
    finished_at bigint,
    seq bigint NOT NULL,
    lease text,
    extra text,
    -- What the row counts toward the queue-full limit (the stored JSON and a fixed share a row).
    size integer NOT NULL,
    -- Its runAt while it waits enqueued for it, else NULL: the partial index holds the waiting tasks alone.
    run_at bigint
);
-- Partial: a task is in it only while leased, so an enqueue never touches it.
CREATE INDEX tasks_leased ON tasks (lease) WHERE lease IS NOT NULL;
CREATE INDEX tasks_waiting ON tasks (run_at) WHERE run_at IS NOT NULL;
CREATE TABLE leases (
    token text PRIMARY KEY,
    worker text,
    deadline bigint NOT NULL,
    duration bigint NOT NULL,
    state text NOT NULL,
    batch_uid bigint
);
CREATE INDEX leases_state_deadline ON leases (state, deadline);
CREATE TABLE matches (uid bigint PRIMARY KEY, uids bytea NOT NULL);
CREATE TABLE changes (seq bigint PRIMARY KEY, uid bigint NOT NULL, deleted boolean NOT NULL, task text NOT NULL);
-- The code each task type registered at a server (`--task-types`) is stored under, given once.
CREATE TABLE task_types (code integer PRIMARY KEY, name text NOT NULL UNIQUE);
-- Idempotency keys (digests of caller and key) with the tasks their first enqueue made.
CREATE TABLE idempotency_keys (
    key bytea PRIMARY KEY,
    request bytea NOT NULL,
    first_uid bigint NOT NULL,
    count integer NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
-- What each lease or server-run task processed, and which tasks each held.
CREATE TABLE batches (
    uid bigint PRIMARY KEY,
    started_at bigint NOT NULL,
    finished_at bigint,
    enqueued_first bigint NOT NULL,
    enqueued_last bigint NOT NULL,
    index_uid text,
    -- A bit (1 << status) per status its tasks are in: a status filter reads no JSON.
    statuses integer NOT NULL,
    lease text,
    worker text,
    lease_state text,
    strategy text NOT NULL,
    stats text NOT NULL,
    details text NOT NULL
);
CREATE TABLE batch_tasks (batch_uid bigint NOT NULL, task_uid bigint NOT NULL, PRIMARY KEY (batch_uid, task_uid));
CREATE INDEX batch_tasks_task ON batch_tasks (task_uid);
CREATE TABLE batch_progress (batch_uid bigint PRIMARY KEY, steps text NOT NULL);
CREATE TABLE api_keys (
    uid text PRIMARY KEY,
    name text,
    description text,
    actions text NOT NULL,
    indexes text NOT NULL,
    expires_at bigint,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
"""

# Version 3: webhooks and their outbox. Finished tasks by entry id; each webhook's progress is a cursor
# (`delivered`, the last entry id it took); the last id given is meta's `outbox_last`.
_WEBHOOKS = """
CREATE TABLE IF NOT EXISTS webhooks (
    uuid text PRIMARY KEY,
    url text NOT NULL,
    headers text NOT NULL,
    secret text,
    created_at bigint NOT NULL,
    delivered bigint NOT NULL,
    dropped bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_outbox (id bigint PRIMARY KEY, task_uid bigint NOT NULL);
"""


# Step 2, replicas: the leader row (one), and how far each replica followed the log (pruning waits for the slowest).
_REPLICAS = """
CREATE TABLE IF NOT EXISTS leader (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    name text NOT NULL,
    term bigint NOT NULL,
    deadline bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas (name text PRIMARY KEY, seq bigint NOT NULL, seen_at bigint NOT NULL);
INSERT INTO meta (key, value) VALUES ('keys_version', 0) ON CONFLICT (key) DO NOTHING;
"""


def migrate(conn: Connection) -> None:
    """Brings the database to SCHEMA_VERSION; the caller holds a transaction and UNIT_LOCK."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL)")
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = 0 if row is None else row[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"the database has schema {version}, newer than this server's {SCHEMA_VERSION}")
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        conn.execute(_TABLES)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('next_uid', 0), ('last_seq', 0), ('task_count', 0),"
            " ('change_bytes', 0), ('stored_bytes', 0), ('next_batch_uid', 0), ('batch_count', 0),"
            " ('schema_version', 0)"
        )
        new_epoch(conn)
    if version < 2:
        conn.execute(_REPLICAS)
    if version < 3:
        conn.execute(_WEBHOOKS)
        conn.execute("INSERT INTO meta (key, value) VALUES ('outbox_last', 0) ON CONFLICT (key) DO NOTHING")
    conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (SCHEMA_VERSION,))


def new_epoch(conn: Connection) -> None:
    """A history that does not continue the one before (a fresh database, an imported dump)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('epoch', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (secrets.randbits(62),),
    )
