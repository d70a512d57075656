"""Snapshots and dumps: writing them (run by the scheduler) and starting from them.

A snapshot is a consistent copy of the SQLite database made with SQLite's
online backup; it is opened as is. A dump is a portable JSON Lines export of
every task, API key and webhook (a header line with the keys and webhooks, then one task per line in
the HTTP task shape plus the uids a cancelation or deletion matched); it is
loaded into an empty store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from taskhub.server.model import (
    STATUS_BY_LABEL,
    TYPE_BY_LABEL,
    CustomType,
    KeyRecord,
    Task,
    TaskKind,
    format_time,
    to_micros,
)
from taskhub.server.storage.contract import Storage, WebhookRecord
from taskhub.server.task_types import check_names

DUMP_VERSION = 1


def stamp(now: int) -> str:
    """`YYYYMMDD-HHMMSSmmm`, the form of Meilisearch's dump uids."""
    moment = datetime.fromtimestamp(now / 1_000_000, tz=UTC)
    return moment.strftime("%Y%m%d-%H%M%S") + f"{(now // 1_000) % 1_000:03d}"


def _publish(tmp: pathlib.Path, final: pathlib.Path) -> None:
    """Makes a finished file visible under its final name, never a half-written one."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def write_snapshot(store: Storage, folder: str, now: int) -> pathlib.Path:
    target = pathlib.Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    final = target / f"{stamp(now)}.snapshot"
    tmp = final.with_suffix(".tmp")
    store.backup(tmp)
    _publish(tmp, final)
    return final


def write_dump(store: Storage, folder: str, now: int) -> str:
    """Writes `<dumpUid>.dump` and answers the dump uid."""
    dump_uid = stamp(now)
    target = pathlib.Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    final = target / f"{dump_uid}.dump"
    tmp = final.with_suffix(".tmp")
    reader = store.reader(scan=True)
    # One committed state throughout, whatever commits meanwhile.
    with contextlib.closing(reader), reader.snapshot(), open(tmp, "w", encoding="utf-8") as out:
        # API keys are few: they ride in the header (without secrets, which derive from the master key).
        header = {
            "dumpVersion": DUMP_VERSION,
            "dumpUid": dump_uid,
            "nextUid": reader.tasks.next_uid(),
            "apiKeys": [dataclasses.asdict(k) for k in reader.keys.all_keys()],
            # As Meilisearch's dumps: the webhooks made through the API, with their headers (not the reserved
            # one, which the settings make), and their secrets; not what they were still owed.
            "webhooks": [
                {"uuid": w.uuid, "url": w.url, "headers": w.headers, "secret": w.secret, "createdAt": w.created_at}
                for w in reader.webhooks.all_webhooks()
                if w.url
            ],
        }
        out.write(json.dumps(header) + "\n")
        for task, matched in reader.tasks.iter_tasks():
            out.write(json.dumps(_task_line(task, matched)) + "\n")
    _publish(tmp, final)
    return dump_uid


def _task_line(task: Task, matched: list[int] | None) -> dict[str, object]:
    line: dict[str, object] = {
        "uid": task.uid,
        "indexUid": task.index_uid,
        "status": task.status.label,
        "type": task.type.label,
        "canceledBy": task.canceled_by,
        "details": task.details,
        "error": task.error,
        "enqueuedAt": format_time(task.enqueued_at),
        "startedAt": None if task.started_at is None else format_time(task.started_at),
        "finishedAt": None if task.finished_at is None else format_time(task.finished_at),
    }
    if task.extra:
        line["extra"] = task.extra
    if matched is not None:
        line["matchedUids"] = list(matched)
    return line


# A dump line always has `enqueuedAt`; `startedAt` and `finishedAt` may be null.
def _parse_time(value: str) -> int:
    return to_micros(datetime.fromisoformat(value.replace("Z", "+00:00")))


def _parse_optional_time(value: str | None) -> int | None:
    return None if value is None else _parse_time(value)


def _read_dump(
    path: pathlib.Path, kind: Callable[[str], TaskKind]
) -> tuple[dict[str, Any], Iterator[tuple[Task, list[int] | None]]]:
    handle = open(path, encoding="utf-8")  # noqa: SIM115 - the returned reader closes it
    header = json.loads(handle.readline())
    if header.get("dumpVersion") != DUMP_VERSION:
        handle.close()
        raise ValueError(f"{path} is not a taskhub dump of version {DUMP_VERSION}")

    def tasks() -> Iterator[tuple[Task, list[int] | None]]:
        with handle:
            for line in handle:
                row = json.loads(line)
                yield (
                    Task(
                        uid=row["uid"],
                        index_uid=row["indexUid"],
                        status=STATUS_BY_LABEL[row["status"]],
                        type=kind(row["type"]),
                        canceled_by=row["canceledBy"],
                        details=row["details"],
                        error=row["error"],
                        enqueued_at=_parse_time(row["enqueuedAt"]),
                        started_at=_parse_optional_time(row["startedAt"]),
                        finished_at=_parse_optional_time(row["finishedAt"]),
                        extra=_without_batch(row.get("extra")),
                    ),
                    row.get("matchedUids"),
                )

    return header, tasks()


def _without_batch(extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """Dumps do not carry batches yet: an imported task names none, as after a Meilisearch dump before v1.13."""
    if not extra or "batchUid" not in extra:
        return extra
    rest = {k: v for k, v in extra.items() if k != "batchUid"}
    return rest or None


def import_dump(store: Storage, path: str | pathlib.Path) -> int:
    """Loads a dump into an empty database, in one unit of work; answers the number of tasks loaded."""
    with store.transaction() as tx:
        known: dict[str, TaskKind] = dict(TYPE_BY_LABEL)

        def kind(label: str) -> TaskKind:
            """A dumped task's type: Meilisearch's, or one registered now if this database lacks it."""
            found = known.get(label)
            if found is None:
                check_names([label])
                codes = {name: code for code, name in tx.task_types.register([label])}
                found = known[label] = CustomType(codes[label], label)
            return found

        header, tasks = _read_dump(pathlib.Path(path), kind)
        count = tx.tasks.load(tasks, header["nextUid"])
        for key in header.get("apiKeys", []):
            tx.keys.insert_key(KeyRecord(**key))
        for hook in header.get("webhooks", []):
            tx.webhooks.put_webhook(
                WebhookRecord(hook["uuid"], hook["url"], hook["headers"], hook["secret"], hook["createdAt"])
            )
    return count


def import_snapshot(snapshot: str | pathlib.Path, db_path: str | pathlib.Path) -> None:
    """Starts from a snapshot: copies it to the database path, which must not exist yet."""
    db = pathlib.Path(db_path)
    if db.exists():
        raise FileExistsError(f"{db} already exists; remove it or choose another --db to import a snapshot")
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(snapshot, db)
