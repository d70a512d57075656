"""Server settings: one dataclass, filled from flags with `TASKHUB_*` fallbacks.

`taskhub.server.cli` declares a flag for each field (`--db`, env `TASKHUB_DB`, default
`Config.db`) with its help from `HELP`; docs/configuration.md is generated from both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(slots=True)
class Config:
    """Everything `taskhub serve` can be told."""

    db: str = "./data/taskhub.db"
    db_password_file: str | None = None
    db_pool_size: int = 2
    db_statement_timeout: str = "0"
    grpc_listen: str = "127.0.0.1:50051"
    http_listen: str = "127.0.0.1:7700"
    http_allowed_hosts: str = ""
    http_allowed_origins: str = ""
    no_http: bool = False
    master_key: str | None = None
    snapshots_dir: str = "./data/snapshots"
    dumps_dir: str = "./data/dumps"
    import_snapshot: str | None = None
    import_dump: str | None = None
    grace_seconds: float = 5.0
    max_batch_size: int = 100
    max_attempts: int = 5
    retry_policy: str | None = None
    watch_retention: int = 100_000
    watch_retention_size: str | None = None
    watch_buffer: int = 1_024
    max_watchers: int = 20_000
    max_watchers_per_key: int = 10_000
    max_watchers_per_connection: int = 2_000
    max_watchers_per_client: int = 500
    max_task_db_size: str = "10GiB"
    cleanup_threshold: int = 1_000_000
    cleanup_batch: int = 100_000
    commit_window_ms: float = 5.0
    task_index: str = "memory"
    event_loop: str = "auto"
    log_level: str = "INFO"
    log_format: str = "text"
    http_payload_size_limit: str = "1MiB"
    tls_cert: str | None = None
    tls_key: str | None = None
    task_types: str = ""
    idempotency_ttl: str = "24h"
    max_idempotency_keys: int = 1_000_000
    replica_name: str = ""
    metrics_max_indexes: int = 100
    task_webhook_url: str | None = None
    task_webhook_authorization_header: str | None = None
    experimental_allowed_ip_networks: str | None = None
    webhook_outbox_size: int = 100_000


HELP = {
    "db": (
        "SQLite database file, or a PostgreSQL URL (`postgresql://USER@HOST[:PORT]/DB[?sslmode=...]`; its password"
        " best by --db-password-file or libpq's PGPASSWORD, PGPASSFILE, ~/.pgpass)"
    ),
    "db_password_file": (
        "PostgreSQL: a file whose first line is the password, kept out of the URL (and so out of `ps`, logs and"
        " errors); libpq's PGPASSWORD, PGPASSFILE and ~/.pgpass work too"
    ),
    "db_pool_size": (
        "read connections (each with its thread) that answer long reads: pages of more than 200 tasks, batch lists,"
        " watch replays"
    ),
    "db_statement_timeout": (
        "PostgreSQL: a statement running longer fails its call as `unavailable` (503) rather than holding the"
        " store; 30s, 500ms, 2m...; 0 never"
    ),
    "grpc_listen": "host:port of the gRPC server",
    "http_listen": "host:port of the JSON gateway",
    "http_allowed_hosts": (
        "comma list of further `Host` names the gateway answers to (`name` or `name:port`;"
        " `*`: any), besides its listen address and localhost"
    ),
    "http_allowed_origins": (
        "comma list of further origins (`https://admin.example`; `*`: any) whose pages may"
        " send the gateway requests that change something"
    ),
    "no_http": "serve gRPC only, without the JSON gateway",
    "master_key": "require `Authorization: Bearer <key>` on every call",
    "snapshots_dir": "folder for snapshotCreation files",
    "dumps_dir": "folder for dumpCreation files",
    "import_snapshot": "start from this snapshot (the database must not exist yet)",
    "import_dump": "start from this dump (the database must be empty)",
    "grace_seconds": "on SIGTERM/SIGINT, how long in-flight calls may take to finish",
    "max_batch_size": "the most tasks leased to a worker in one batch",
    "max_attempts": (
        "attempts a task gets in all (expired leases and retryable failures count), unless --retry-policy says"
        " otherwise for its type"
    ),
    "retry_policy": (
        "retries with backoff per task type, as JSON: type name (or `*` for every type) -> any of `attempts`"
        " (1-100), `initialDelay` (0-1d), `maxDelay` (0-30d), `multiplier` (1-10), `jitter` (0-1); durations"
        """ `500ms`, `10s`, `5m`, `1h`, `1d` or seconds. Defaults: attempts --max-attempts, 1s, 1h, 2, 0.1."""
        """ Example: `{"*": {"attempts": 3}, "documentAdditionOrUpdate": {"initialDelay": "30s"}}`"""
    ),
    "watch_retention": (
        "how many task changes are kept for watchers that resume (more while the index saved for a fast"
        " start lacks them: it is saved before they go, at most once a minute)"
    ),
    "watch_retention_size": (
        "the most bytes of task changes kept for watchers that resume, oldest dropped first;"
        " default a tenth of --max-task-db-size"
    ),
    "watch_buffer": "changes queued for one watcher before it is cut off as too slow",
    "max_watchers": "the most watch streams open at once",
    "max_watchers_per_key": "the most watch streams one API key (or, without a master key, all callers) may hold",
    "max_watchers_per_connection": "the most watch streams one gRPC connection may hold",
    "max_watchers_per_client": "the most event streams (SSE) one HTTP client address may hold at the gateway",
    "max_task_db_size": "past this database size new tasks are refused (no_space_left_on_device); 10GiB, 500MiB...",
    "cleanup_threshold": "at this many tasks, the oldest finished ones are deleted automatically",
    "cleanup_batch": "how many finished tasks one automatic cleanup deletes",
    "commit_window_ms": (
        "when the queue is busy, the longest an enqueue waits for others to share its commit"
        " (and fsync), in milliseconds; 0 commits as soon as the last commit ends"
    ),
    "task_index": (
        "what answers which tasks match a filter: `memory` (an index kept in memory, fed from the change log;"
        " lists in milliseconds at millions of tasks) or `sql` (the task rows themselves: no memory, no start-up,"
        " slow past some thousands of tasks)"
    ),
    "event_loop": (
        "`auto` (uvloop where it is installed, else asyncio's own), `uvloop` or `asyncio`;"
        " uvloop cuts the loop's share of every call"
    ),
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_format": "`text` (a line a record) or `json` (an object a line, with each event's fields)",
    "http_payload_size_limit": (
        "the largest request body, and task details, taken (413 payload_too_large); 1MiB, 100KiB..."
    ),
    "tls_cert": "serve gRPC and HTTP over TLS with this certificate chain (PEM); needs --tls-key",
    "tls_key": "the private key (PEM) of --tls-cert",
    "task_types": (
        "comma list of your own task types beside Meilisearch's (`sendEmail,resizeImage`): camelCase names"
        " of a lower-case letter then up to 63 letters and digits; their details are any JSON object"
    ),
    "idempotency_ttl": (
        "how long an idempotency key answers its first enqueue again (`Idempotency-Key`, `idempotency_key`);"
        " 24h, 90m, 3600s..."
    ),
    "max_idempotency_keys": (
        "the most idempotency keys kept; past it the oldest are dropped (with the expired ones, every 10 seconds)"
    ),
    "replica_name": (
        "this server's name among the servers (replicas) on one PostgreSQL database, in the leader row and its logs;"
        " unique per replica; empty: `HOST:PID`"
    ),
    "metrics_max_indexes": (
        "`GET /metrics` shows tasks by index for this many indexes, those holding the most tasks; the others"
        ' are summed as one (`index="~other"`)'
    ),
    "task_webhook_url": (
        "as Meilisearch: POST every finished task to this URL (the reserved webhook, shown at GET /webhooks"
        " under the nil uuid, not editable through the API)"
    ),
    "task_webhook_authorization_header": "the `Authorization` header sent to --task-webhook-url",
    "experimental_allowed_ip_networks": (
        "as Meilisearch: comma list of networks (`10.0.0.0/8`, `127.0.0.1/32`) webhooks may reach besides"
        " globally reachable addresses, or `any`; loopback, private and link-local targets are refused otherwise"
    ),
    "webhook_outbox_size": (
        "the most finished tasks kept for webhooks not yet delivered to; past it the oldest are dropped (and"
        " counted) so a dead endpoint never fills the database"
    ),
}


def env_name(name: str) -> str:
    return "TASKHUB_" + name.upper()


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `500MiB`, `10GiB`, `2GB`."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{text!r} is not a size (try 10GiB, 500MiB or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def task_type_names(config: Config) -> list[str]:
    """The registered task types of `--task-types`; ValueError names the first bad one."""
    from taskhub.server.task_types import check_names  # config stays importable without the domain

    names = [name.strip() for name in config.task_types.split(",") if name.strip()]
    try:
        return check_names(names)
    except ValueError as exc:
        raise ValueError(f"--task-types: {exc} (or TASKHUB_TASK_TYPES)") from None


_DURATIONS = {"": 1, "s": 1, "m": 60, "h": 3_600, "d": 86_400}


def statement_timeout_ms(config: Config) -> int:
    """`--db-statement-timeout` in milliseconds; 0 for none."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*", config.db_statement_timeout.lower())
    if match is None:
        raise ValueError(
            f"--db-statement-timeout: {config.db_statement_timeout!r} is not a duration (try 30s, 500ms, 2m; 0: none)"
        )
    scale = {"ms": 1, "": 1_000, "s": 1_000, "m": 60_000, "h": 3_600_000}[match.group(2)]
    return int(float(match.group(1)) * scale)


def parse_duration(text: str) -> int:
    """Microseconds from `24h`, `90m`, `3600s`, `1d` or a number of seconds; more than zero."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _DURATIONS or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration (try 24h, 90m, 3600s)")
    return int(float(match.group(1)) * _DURATIONS[match.group(2).lower()] * 1_000_000)


def watch_retention_bytes(config: Config) -> int:
    """The change log's byte budget: as given, else a tenth of the queue's size limit.

    Kept well under the limit so that the change log alone can never hold the queue full.
    """
    if config.watch_retention_size:
        return parse_size(config.watch_retention_size)
    return parse_size(config.max_task_db_size) // 10
