"""Tasks written into messages in place: times, durations of either sign, details under their case."""

from __future__ import annotations

import pytest

from taskhub.server.edge import convert
from taskhub.server.model import Task, TaskStatus, TaskType
from taskhub.v1 import task_service_pb2 as pb

T0 = 1_700_000_000_123_456  # microseconds, with a fraction of a second


@pytest.mark.parametrize("took", [2_500_000, 1, 0, -1_500])  # a clock set back gives a negative one
def test_times_and_the_duration_keep_their_microseconds_and_one_sign(took):
    task = Task(
        uid=7,
        index_uid="movies",
        status=TaskStatus.SUCCEEDED,
        type=TaskType.DOCUMENT_ADDITION_OR_UPDATE,
        details={"receivedDocuments": 3, "indexedDocuments": None},
        enqueued_at=T0,
        started_at=T0 + 10,
        finished_at=T0 + 10 + took,
        seq=9,
    )
    response = pb.GetTaskResponse()
    convert.fill_task(response.task, task)
    message = response.task
    assert (message.uid, message.index_uid, message.status, message.type) == (7, "movies", 3, 5)
    assert [convert.micros(t) for t in (message.enqueued_at, message.started_at, message.finished_at)] == [
        T0,
        T0 + 10,
        T0 + 10 + took,
    ]
    assert message.duration.ToMicroseconds() == took
    message.duration.ToJsonString()  # raises on seconds and nanos of different signs
    # None in the details is left out, not sent as a zero.
    kind = message.details.document_addition_or_update
    assert kind.received_documents == 3 and not kind.HasField("indexed_documents")


def test_an_unfinished_task_has_no_end_nor_duration():
    task = Task(uid=1, index_uid=None, status=TaskStatus.ENQUEUED, type=TaskType.DUMP_CREATION, enqueued_at=T0, seq=1)
    message = pb.GetTaskResponse().task
    convert.fill_task(message, task)
    assert not any(message.HasField(f) for f in ("index_uid", "details", "started_at", "finished_at", "duration"))


def test_settings_and_swaps_land_under_their_case():
    settings = Task(
        uid=2,
        index_uid="movies",
        status=TaskStatus.ENQUEUED,
        type=TaskType.SETTINGS_UPDATE,
        details={"rankingRules": ["words"], "maxTotalHits": 1000},
        enqueued_at=T0,
        seq=2,
    )
    swap = Task(
        uid=3,
        index_uid=None,
        status=TaskStatus.ENQUEUED,
        type=TaskType.INDEX_SWAP,
        details={"swaps": [{"indexes": ["a", "b"]}]},
        enqueued_at=T0,
        seq=3,
    )
    first, second = pb.GetTaskResponse().task, pb.GetTaskResponse().task
    convert.fill_task(first, settings)
    convert.fill_task(second, swap)
    assert convert.reported_details(first.details) == (
        TaskType.SETTINGS_UPDATE,
        {"rankingRules": ["words"], "maxTotalHits": 1000},
    )
    assert convert.reported_details(second.details) == (TaskType.INDEX_SWAP, {"swaps": [{"indexes": ["a", "b"]}]})
