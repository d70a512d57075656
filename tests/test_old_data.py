"""Old data keeps working: the schema-3 database and the version-1 dump in tests/fixtures/v3 open and import.

The fixture was written once by tests/fixtures/v3/make.py (its docstring names the commit) and is never
made again, so a later change of the schema or the dump format must migrate these very files. Every
expected value below is written out by hand from what that script did, not read back through the code
under test: a migration that loses or alters a field fails here.
"""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import sqlite3
from datetime import UTC, datetime

import pytest

from taskhub.client.aio import AsyncTaskHubClient
from taskhub.errors import TaskHubError
from taskhub.server import app
from taskhub.server.config import Config

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "v3"
DUMP = "20240101-000018002.dump"
MASTER_KEY = "old-data-master-key-of-v3-fixture"
KEY_UID = "0b6c1a52-3c55-4b8e-9a61-8f2d3c4b5a69"
# HMAC-SHA256(master key, key uid): what the key's holder was given when it was made.
KEY_SECRET = "bdd6a708f4fa9f8b25f7fcd411972c92214d70996464c6fcf85e320606da6abb"
# 2024-01-02T00:00:00Z: a day after the fixture was made; the clock of the reopened server.
NOW = 1_704_153_600_000_000
NOW_TEXT = "2024-01-02T00:00:00.000000Z"


def _task(uid, index_uid, status, type_, details, enqueued, started=None, finished=None, **extra) -> dict:
    """A task as the client shows it (Meilisearch's shape); times are the seconds part after 2024-01-01T00:00."""
    day = "2024-01-01T00:00:"
    return {
        "uid": uid,
        "indexUid": index_uid,
        "status": status,
        "type": type_,
        "canceledBy": extra.get("canceled_by"),
        "details": details,
        "error": extra.get("error"),
        "duration": extra.get("duration"),
        "enqueuedAt": day + enqueued,
        "startedAt": None if started is None else day + started,
        "finishedAt": None if finished is None else day + finished,
    }


SETTINGS_ERROR = {
    "message": "`rankingRules` has an unknown rule.",
    "code": "invalid_settings_ranking_rules",
    "type": "invalid_request",
    "link": "https://docs.meilisearch.com/errors#invalid_settings_ranking_rules",
}
# Every task of the database once reopened. Task 4 (indexDeletion of `old`) was deleted by 7;
# task 8 was processing when the server stopped, so it is back in the queue with no start.
TASKS = [
    _task(0, "movies", "succeeded", "indexCreation", {"primaryKey": "id"},
          "02.000246Z", "03.000369Z", "04.000492Z", duration="PT1.000123S"),
    _task(1, "movies", "succeeded", "documentAdditionOrUpdate", {"receivedDocuments": 3, "indexedDocuments": 3},
          "02.000246Z", "05.000615Z", "06.000738Z", duration="PT1.000123S"),
    _task(2, "movies", "failed", "settingsUpdate", {"rankingRules": ["words", "typo"]},
          "02.000246Z", "07.000861Z", "08.000984Z", duration="PT1.000123S", error=SETTINGS_ERROR),
    _task(3, "books", "canceled", "documentAdditionOrUpdate", {"receivedDocuments": 5, "indexedDocuments": 0},
          "02.000246Z", None, "12.001476Z", canceled_by=6),
    _task(5, "books", "canceled", "documentDeletion",
          {"providedIds": 2, "deletedDocuments": 0, "originalFilter": None},
          "02.000246Z", None, "12.001476Z", canceled_by=6),
    _task(6, None, "succeeded", "taskCancelation",
          {"matchedTasks": 2, "canceledTasks": 2, "originalFilter": "?indexUids=books&statuses=enqueued"},
          "11.001353Z", "12.001476Z", "12.001476Z", duration="PT0S"),
    _task(7, None, "succeeded", "taskDeletion",
          {"matchedTasks": 1, "deletedTasks": 1, "originalFilter": "?indexUids=old"},
          "13.001599Z", "14.001722Z", "14.001722Z", duration="PT0S"),
    _task(8, "movies", "enqueued", "documentAdditionOrUpdate", {"receivedDocuments": 4, "indexedDocuments": None},
          "15.001845Z"),
    _task(9, None, "succeeded", "dumpCreation", {"dumpUid": "20240101-000018002"},
          "17.002091Z", "18.002214Z", "18.002214Z", duration="PT0S"),
    _task(10, None, "enqueued", "indexSwap", {"swaps": [{"indexes": ["movies", "books"]}]}, "19.002337Z"),
    _task(11, "books", "enqueued", "documentAdditionOrUpdate", {"receivedDocuments": 1, "indexedDocuments": None},
          "20.002460Z"),
    _task(12, None, "enqueued", "taskDeletion",
          {"matchedTasks": 1, "deletedTasks": None, "originalFilter": "?types=taskCancelation"}, "21.002583Z"),
    _task(13, None, "enqueued", "taskCancelation",
          {"matchedTasks": 1, "canceledTasks": None, "originalFilter": "?indexUids=books&statuses=enqueued"},
          "22.002706Z"),
]  # fmt: skip
BY_UID = {task["uid"]: task for task in TASKS}
TOTALS = {"enqueued": 5, "processing": 0, "succeeded": 5, "failed": 1, "canceled": 2}
# What the key may see: its indexes `movies` and `books*`, and no global task.
KEY_VISIBLE = [0, 1, 2, 3, 5, 8, 11]
# The change log after sequence 20, as (sequence, deleted, uid, status): deletion 7 runs and
# drops task 4, task 8 is leased, dump 9 runs, tasks 10 to 13 are enqueued; 33 is written at
# this start, when task 8, processing at the stop, goes back to the queue.
CHANGES_AFTER_20 = [
    (21, False, 7, "processing"),
    (22, True, 4, "succeeded"),
    (23, False, 7, "succeeded"),
    (24, False, 8, "enqueued"),
    (25, False, 8, "processing"),
    (26, False, 9, "enqueued"),
    (27, False, 9, "processing"),
    (28, False, 9, "succeeded"),
    (29, False, 10, "enqueued"),
    (30, False, 11, "enqueued"),
    (31, False, 12, "enqueued"),
    (32, False, 13, "enqueued"),
    (33, False, 8, "enqueued"),
]
# The dump was written while task 9 made it and task 8 was leased: both come back enqueued.
DUMPED_TASKS = [
    *(t for t in TASKS if t["uid"] < 9),
    _task(9, None, "enqueued", "dumpCreation", {"dumpUid": None}, "17.002091Z"),
]


def config_in(folder: pathlib.Path, **settings) -> Config:
    return Config(
        db=str(folder / "data" / "taskhub.db"),
        grpc_listen="127.0.0.1:0",
        no_http=True,
        master_key=MASTER_KEY,
        snapshots_dir=str(folder / "snapshots"),
        dumps_dir=str(folder / "dumps"),
        **settings,
    )


async def all_tasks(client: AsyncTaskHubClient) -> list[dict]:
    return [task.to_dict() for task in (await client.list_tasks(limit=100, reverse=True)).results]


async def check_key(service, client: AsyncTaskHubClient, visible: list[int]) -> None:
    """The old key reads back whole, and its secret still lets its holder in, within its indexes."""
    key = await client.get_key(KEY_UID)
    assert (key.key, key.name, key.description) == (KEY_SECRET, "Old producer", "made by the v3 fixture")
    assert (key.actions, key.indexes) == (["tasks.get", "tasks.enqueue"], ["movies", "books*"])
    assert key.expires_at == datetime(2100, 1, 1, tzinfo=UTC)
    assert key.created_at == key.updated_at == datetime(2024, 1, 1, 0, 0, 1, 123, tzinfo=UTC)
    async with AsyncTaskHubClient(service.grpc_target, api_key=KEY_SECRET) as holder:
        assert [t.uid for t in (await holder.list_tasks(limit=100, reverse=True)).results] == visible
    async with AsyncTaskHubClient(service.grpc_target, api_key="not-" + KEY_SECRET) as stranger:
        with pytest.raises(TaskHubError) as refused:
            await stranger.list_tasks()
        assert refused.value.code == "invalid_api_key"


@pytest.fixture
def old_database(tmp_path) -> Config:
    """A copy of the fixture database where a server would keep it."""
    config = config_in(tmp_path)
    pathlib.Path(config.db).parent.mkdir(parents=True)
    shutil.copyfile(FIXTURE / "taskhub.db", config.db)
    with sqlite3.connect(config.db) as conn:  # still the old format, not a fixture made again by newer code
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    return config


async def test_v3_database_opens_whole(old_database):
    service = await app.start(old_database, background=False, clock=lambda: NOW)
    try:
        async with AsyncTaskHubClient(service.grpc_target, api_key=MASTER_KEY) as client:
            assert await all_tasks(client) == TASKS
            for expected in TASKS:
                assert (await client.get_task(expected["uid"])).to_dict() == expected
            with pytest.raises(TaskHubError) as gone:
                await client.get_task(4)
            assert gone.value.code == "task_not_found"
            for status, total in TOTALS.items():
                assert (await client.list_tasks(statuses=status, limit=1)).total == total, status

            await check_key(service, client, KEY_VISIBLE)

            changes = []
            async with asyncio.timeout(5):
                async for change in client.watch_tasks(after=20):
                    changes.append((change.sequence, change.deleted, change.task.uid, change.task.status.value))
                    if change.sequence == CHANGES_AFTER_20[-1][0]:
                        break
            assert changes == CHANGES_AFTER_20

            # The key enqueues on its index; the uid follows the old ones.
            async with AsyncTaskHubClient(service.grpc_target, api_key=KEY_SECRET) as holder:
                new = await holder.enqueue("documentAdditionOrUpdate", "books", {"receivedDocuments": 2})
            assert new.uid == 14

            # The cancelation and deletion left enqueued run on the sets they matched when enqueued,
            # read from disk: 13 cancels 11 but not 14, though 14 fits its filter; 12 deletes 6 but not 13.
            assert await service.scheduler.tick() == 2
            assert (await client.get_task(11)).to_dict() == {
                **BY_UID[11],
                "status": "canceled",
                "canceledBy": 13,
                "details": {"receivedDocuments": 1, "indexedDocuments": 0},
                "finishedAt": NOW_TEXT,
                "batchUid": 0,  # the cancelation's batch: the first this old database ever made
            }
            assert (await client.get_task(14)).status.value == "enqueued"
            canceler, deleter = await client.get_task(13), await client.get_task(12)
            assert (canceler.status.value, canceler.details["canceledTasks"]) == ("succeeded", 1)
            assert (deleter.status.value, deleter.details["deletedTasks"]) == ("succeeded", 1)
            with pytest.raises(TaskHubError) as gone:
                await client.get_task(6)
            assert gone.value.code == "task_not_found"
    finally:
        await service.stop(0)


async def test_v1_dump_imports_into_an_empty_database(tmp_path):
    """As `taskhub serve --import-dump <file>` does: the dump loads into a new database on start."""
    dump = tmp_path / DUMP
    shutil.copyfile(FIXTURE / DUMP, dump)
    config = config_in(tmp_path, import_dump=str(dump))
    service = await app.start(config, background=False, clock=lambda: NOW)
    try:
        async with AsyncTaskHubClient(service.grpc_target, api_key=MASTER_KEY) as client:
            assert await all_tasks(client) == DUMPED_TASKS
            totals = {"enqueued": 2, "processing": 0, "succeeded": 4, "failed": 1, "canceled": 2}
            for status, total in totals.items():
                assert (await client.list_tasks(statuses=status, limit=1)).total == total, status
            await check_key(service, client, [0, 1, 2, 3, 5, 8])
            assert (await client.enqueue("documentAdditionOrUpdate", "movies", {"receivedDocuments": 1})).uid == 10
    finally:
        await service.stop(0)
