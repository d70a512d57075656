"""Bulk loader: fills a taskhub SQLite database with N realistic tasks, fast.

    .venv/bin/python bench/load_tasks.py --tasks 1000000 --db /tmp/taskhub-1m.db

`taskhub.server.storage.sqlite.database.SqliteStorage` creates the schema (so the server opens the file as
its own), then rows go in with executemany in big transactions, with the
secondary indexes dropped during the load and rebuilt after (much faster than
keeping them up to date row by row). The meta counters (`next_uid`, `last_seq`,
`task_count`) are set as the server would have left them; the change log starts
empty (watchers resume from after the load).

The mix: ~50 indexes with a skewed (Zipf-like) share of tasks, Meilisearch's task
types in plausible proportions, enqueued dates spread evenly over `--days` days
ending now, mostly succeeded tasks, some failed, a tail of enqueued ones (and a
few processing) at the newest uids, and every 5,000 uids a `taskCancelation`
that canceled a few of the tasks before it (`canceled_by`, with its `matches` row).
Deterministic for a given `--seed`.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from array import array
from pathlib import Path

from taskhub.server.model import TaskStatus as S, TaskType as T
from taskhub.server.storage.sqlite.database import SqliteStorage as Store

SECOND = 1_000_000
CANCEL_EVERY = 5_000  # a taskCancelation at every uid ≡ CANCEL_EVERY - 1 (mod CANCEL_EVERY)
INDEXES = [f"index-{i:02d}" for i in range(50)]
INDEX_WEIGHTS = [1 / (i + 1) for i in range(len(INDEXES))]
# (type, weight); cancelations are placed on a fixed grid, not drawn.
TYPE_MIX = [
    (T.DOCUMENT_ADDITION_OR_UPDATE, 70),
    (T.DOCUMENT_DELETION, 10),
    (T.SETTINGS_UPDATE, 8),
    (T.INDEX_CREATION, 4),
    (T.INDEX_UPDATE, 1),
    (T.INDEX_DELETION, 2),
    (T.INDEX_SWAP, 1),
    (T.DUMP_CREATION, 1),
    (T.SNAPSHOT_CREATION, 1),
    (T.TASK_DELETION, 1),
]
ERROR = json.dumps(
    {
        "message": "Index `movies` not found.",
        "code": "index_not_found",
        "type": "invalid_request",
        "link": "https://docs.meilisearch.com/errors#index_not_found",
    },
    separators=(",", ":"),
)
INSERT = (
    "INSERT INTO tasks (uid, index_uid, status, type, canceled_by, details, error, enqueued_at, started_at,"
    " finished_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def details_pool(rng: random.Random) -> dict[tuple[T, S], list[str]]:
    """A few hundred stored details per (type, outcome), as the server would have stored them."""
    pool: dict[tuple[T, S], list[str]] = {}
    for type_, _ in TYPE_MIX:
        for status in (S.ENQUEUED, S.SUCCEEDED, S.FAILED, S.CANCELED):
            finished_ok, out = status == S.SUCCEEDED, []
            for _ in range(200):
                n = rng.randint(1, 10_000)
                if type_ == T.DOCUMENT_ADDITION_OR_UPDATE:
                    d = {"receivedDocuments": n, "indexedDocuments": n if finished_ok else None}
                elif type_ == T.DOCUMENT_DELETION:
                    d = {"providedIds": n, "deletedDocuments": n if finished_ok else None, "originalFilter": None}
                elif type_ == T.SETTINGS_UPDATE:
                    d = {"rankingRules": ["words", "typo", "proximity"], "filterableAttributes": ["genre", "year"]}
                elif type_ in (T.INDEX_CREATION, T.INDEX_UPDATE):
                    d = {"primaryKey": rng.choice(["id", "uid", None])}
                elif type_ == T.INDEX_DELETION:
                    d = {"deletedDocuments": n if finished_ok else None}
                elif type_ == T.INDEX_SWAP:
                    a, b = rng.sample(INDEXES, 2)
                    d = {"swaps": [{"indexes": [a, b]}]}
                elif type_ == T.DUMP_CREATION:
                    d = {"dumpUid": f"2024{n:010d}" if finished_ok else None}
                elif type_ == T.TASK_DELETION:
                    d = {
                        "matchedTasks": 0,
                        "deletedTasks": 0 if status != S.ENQUEUED else None,
                        "originalFilter": "?statuses=succeeded&beforeEnqueuedAt=2024-01-01",
                    }
                else:  # snapshotCreation has no details
                    d = None
                if d is not None and status in (S.FAILED, S.CANCELED):
                    d = {
                        k: (0 if v is None and k in ("indexedDocuments", "deletedDocuments", "deletedTasks") else v)
                        for k, v in d.items()
                    }
                out.append(None if d is None else _dumps(d))
            pool[(type_, status)] = out
    return pool


class Loader:
    """Generates the rows of uids [start, stop) and writes them."""

    def __init__(self, conn: sqlite3.Connection, total: int, days: float, seed: int, now: int) -> None:
        self.conn, self.total = conn, total
        self.rng = random.Random(seed)
        self.pool = details_pool(self.rng)
        self.first = now - int(days * 86_400 * SECOND)
        self.step = max(1, (now - self.first) // max(total, 1))
        # The newest 0.5% are still enqueued; the 20 before them are processing.
        self.enqueued_from = total - max(1, total // 200)
        self.processing_from = max(0, self.enqueued_from - 20)
        self.types = [t for t, _ in TYPE_MIX]
        self.type_weights = [w for _, w in TYPE_MIX]

    def enqueued_at(self, uid: int) -> int:
        return self.first + uid * self.step

    def rows(self, start: int, stop: int) -> tuple[list[tuple], list[tuple]]:
        rng, pool, n = self.rng, self.pool, stop - start
        types = rng.choices(self.types, self.type_weights, k=n)
        indexes = rng.choices(INDEXES, INDEX_WEIGHTS, k=n)
        draws = [rng.random() for _ in range(n)]
        picks = [rng.randrange(200) for _ in range(n)]
        waits = [rng.randrange(2 * SECOND) for _ in range(n)]
        runs = [rng.randrange(1_000, 5 * SECOND) for _ in range(n)]
        rows, matches = [], []
        for i, uid in enumerate(range(start, stop)):
            enq = self.enqueued_at(uid)
            if uid % CANCEL_EVERY == CANCEL_EVERY - 1:
                canceled = [u for u in range(uid - CANCEL_EVERY + 1, uid) if self.canceled(u)]
                details = _dumps(
                    {
                        "matchedTasks": len(canceled),
                        "canceledTasks": len(canceled),
                        "originalFilter": f"?uids={','.join(map(str, canceled[:20]))}",
                    }
                )
                rows.append(
                    (
                        uid,
                        None,
                        int(S.SUCCEEDED),
                        int(T.TASK_CANCELATION),
                        None,
                        details,
                        None,
                        enq,
                        enq + waits[i],
                        enq + waits[i] + runs[i] // 100,
                        3 * uid + 3,
                    )
                )
                matches.append((uid, array("I", canceled).tobytes()))
                continue
            type_ = types[i]
            index_uid = None if type_.is_global else indexes[i]
            # Only worker tasks wait in the tail: an enqueued dump would keep the server busy for minutes.
            if uid >= self.enqueued_from and not type_.server_run:
                rows.append(
                    (
                        uid,
                        index_uid,
                        int(S.ENQUEUED),
                        int(type_),
                        None,
                        pool[(type_, S.ENQUEUED)][picks[i]],
                        None,
                        enq,
                        None,
                        None,
                        3 * uid + 1,
                    )
                )
                continue
            started = enq + waits[i]
            if uid >= self.processing_from and not type_.server_run:
                rows.append(
                    (
                        uid,
                        index_uid,
                        int(S.PROCESSING),
                        int(type_),
                        None,
                        pool[(type_, S.ENQUEUED)][picks[i]],
                        None,
                        enq,
                        started,
                        None,
                        3 * uid + 2,
                    )
                )
                continue
            if self.canceled(uid):
                canceler = self.canceler(uid)
                rows.append(
                    (
                        uid,
                        index_uid,
                        int(S.CANCELED),
                        int(type_),
                        canceler,
                        pool[(type_, S.CANCELED)][picks[i]],
                        None,
                        enq,
                        None,
                        self.enqueued_at(canceler) + SECOND,
                        3 * uid + 3,
                    )
                )
                continue
            status = S.FAILED if draws[i] < 0.05 else S.SUCCEEDED
            rows.append(
                (
                    uid,
                    index_uid,
                    int(status),
                    int(type_),
                    None,
                    pool[(type_, status)][picks[i]],
                    ERROR if status == S.FAILED else None,
                    enq,
                    started,
                    started + runs[i],
                    3 * uid + 3,
                )
            )
        return rows, matches

    @staticmethod
    def canceler(uid: int) -> int:
        return (uid // CANCEL_EVERY + 1) * CANCEL_EVERY - 1

    def canceled(self, uid: int) -> bool:
        """About 2% of tasks, decided by uid alone so a cancelation can list the ones before it."""
        return (uid * 2_654_435_761) % 1_000 < 20 and self.canceler(uid) < self.processing_from

    def last_seq(self) -> int:
        return 3 * (self.total - 1) + 3 if self.total else 0


def load(
    db: str | Path,
    total: int,
    *,
    days: float = 30,
    seed: int = 7,
    chunk: int = 100_000,
    now: int | None = None,
    quiet: bool = False,
) -> float:
    """Creates `db` (which must not exist) with `total` tasks; answers the seconds it took."""
    path = Path(db)
    if path.exists():
        raise SystemExit(f"{path} exists; remove it first (the loader only fills a new database)")
    started = time.monotonic()
    Store(path).close()  # the server's own schema, meta rows and user_version
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while loading and indexing
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA threads=2")  # lets CREATE INDEX sort on a helper thread
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX [{name}]")
    loader = Loader(conn, total, days, seed, now if now is not None else time.time_ns() // 1_000)
    for start in range(0, total, chunk):
        rows, matches = loader.rows(start, min(total, start + chunk))
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.executemany("INSERT INTO matches (uid, uids) VALUES (?, ?)", matches)
        conn.execute("COMMIT")
        if not quiet and (start // chunk) % 10 == 9:
            print(f"  {start + chunk:,} rows in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    conn.execute("BEGIN")
    for _name, sql in indexes:
        conn.execute(sql)
    conn.executemany(
        "UPDATE meta SET value = ? WHERE key = ?",
        [(total, "next_uid"), (loader.last_seq(), "last_seq"), (total, "task_count")],
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.monotonic() - started


def ensure(db_dir: Path, tasks: int, *, quiet: bool = False) -> Path:
    """`tasks-N.db` in `db_dir`, loaded unless it is there already (with N tasks, or it stops)."""
    db = db_dir / f"tasks-{tasks}.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT value FROM meta WHERE key = 'task_count'").fetchone()[0]
        if stored == tasks:
            return db
        raise SystemExit(f"{db} holds {stored} tasks, not {tasks}; remove it")
    if not quiet:
        print(f"loading {tasks:,} tasks into {db} ...", flush=True)
    seconds = load(db, tasks, quiet=True)
    if not quiet:
        print(f"  loaded in {seconds:.1f}s", flush=True)
    return db


def check(db: str | Path, total: int) -> list[str]:
    """Serves a copy of `db` with the real server: totals match raw SQL, reads work, the next uid is `total`."""
    import shutil
    import tempfile

    import grpc

    import harness
    from taskhub.v1 import task_pb2, task_service_pb2 as pb, task_service_pb2_grpc

    problems = []
    with tempfile.TemporaryDirectory(prefix="taskhub-check-") as tmp:
        copy = Path(tmp) / "copy.db"
        shutil.copyfile(db, copy)
        raw = sqlite3.connect(copy)
        filters = {
            "all": (task_pb2.TaskFilter(), "1"),
            "statuses=failed": (
                task_pb2.TaskFilter(statuses=task_pb2.StatusSet(statuses=[S.FAILED])),
                f"status = {int(S.FAILED)}",
            ),
            "indexUids=index-03": (
                task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["index-03"])),
                "index_uid = 'index-03'",
            ),
            "types=taskCancelation": (
                task_pb2.TaskFilter(types=task_pb2.TypeSet(types=[T.TASK_CANCELATION])),
                f"type = {int(T.TASK_CANCELATION)}",
            ),
            "canceledBy=4999": (
                task_pb2.TaskFilter(canceled_by=task_pb2.UidSet(uids=[CANCEL_EVERY - 1])),
                f"canceled_by = {CANCEL_EVERY - 1}",
            ),
        }
        expected = {
            name: raw.execute(f"SELECT COUNT(*) FROM tasks WHERE {sql}").fetchone()[0]
            for name, (_, sql) in filters.items()
        }
        raw.close()
        with (
            harness.Server(copy, "--cleanup-threshold", str(total + 1_000_000)) as server,
            grpc.insecure_channel(server.target) as channel,
        ):
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            for name, (message, _) in filters.items():
                page = stub.ListTasks(pb.ListTasksRequest(filter=message, limit=5), timeout=60)
                if page.total != expected[name]:
                    problems.append(f"ListTasks {name}: total {page.total}, raw SQL counts {expected[name]}")
            if total:
                newest = stub.GetTask(pb.GetTaskRequest(uid=total - 1), timeout=10).task
                if newest.uid != total - 1:
                    problems.append(f"GetTask {total - 1} answered uid {newest.uid}")
            request = pb.EnqueueTaskRequest(type=T.DOCUMENT_ADDITION_OR_UPDATE, index_uid="index-00")
            request.details.document_addition_or_update.received_documents = 1
            uid = stub.EnqueueTask(request, timeout=10).task.task_uid
            if uid != total:
                problems.append(f"the first enqueue got uid {uid}, not {total}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="how many tasks (default 100,000)")
    parser.add_argument("--db", required=True, help="the database file to create (must not exist)")
    parser.add_argument("--days", type=float, default=30, help="enqueued dates spread over this many days")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--check",
        action="store_true",
        help="then serve a copy with the real server and check totals, reads and the next uid",
    )
    args = parser.parse_args()
    seconds = load(args.db, args.tasks, days=args.days, seed=args.seed)
    size = Path(args.db).stat().st_size / 2**20
    print(
        f"loaded {args.tasks:,} tasks into {args.db} in {seconds:.1f}s"
        f" ({args.tasks / seconds:,.0f} tasks/s, {size:,.0f} MiB)"
    )
    if args.check:
        problems = check(args.db, args.tasks)
        print("check:", "OK (the server serves it: totals, reads, next uid)" if not problems else "BROKEN")
        for problem in problems:
            print("  -", problem)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
