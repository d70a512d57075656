"""Filters of `GET /tasks`, `POST /tasks/cancel` and `DELETE /tasks`, as SPEC §3 reads them."""

from __future__ import annotations

import pytest

from gateway_bodies import at, post_task
from helpers import finish, start


@pytest.fixture
async def tasks(http, service):
    """0 succeeded (movies), 1 processing (books, indexCreation), 2 enqueued (books), 3 enqueued dump.

    The dump comes last: while a server task is enqueued, no worker is given a lease.
    """
    await post_task(http)  # enqueued at(1)
    await post_task(http, "indexCreation", "books", {})  # at(2)
    await post_task(http, index_uid="books")  # at(3)
    await start(service, 0)  # at(4)
    await finish(service, 0)  # at(5)
    await start(service, 1)  # at(6)
    await post_task(http, "dumpCreation", None)  # at(7)
    return http


async def uids(http, query: str) -> list[int]:
    response = await http.get(f"/tasks?{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["results"])
    return [task["uid"] for task in body["results"]]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", [3, 2, 1, 0]),
        ("statuses=succeeded", [0]),
        ("statuses=SUCCEEDED,Processing", [1, 0]),
        ("statuses=,,succeeded,", [0]),
        ("statuses=*", [3, 2, 1, 0]),
        ("statuses=failed,*", [3, 2, 1, 0]),
        ("statuses=", []),
        ("types=indexcreation", [1]),
        ("types=documentAdditionOrUpdate,DUMPCREATION", [3, 2, 0]),
        ("types=*", [3, 2, 1, 0]),
        ("indexUids=books", [2, 1]),
        ("indexUids=Books", []),
        ("indexUids=books,movies", [2, 1, 0]),
        ("indexUids=books,*", [3, 2, 1, 0]),
        ("indexUids=", []),
        ("uids=0,2", [2, 0]),
        ("uids=,3,", [3]),
        ("uids=*,1", [3, 2, 1, 0]),
        ("uids=", []),
        ("uids=%2B2", [2]),
        ("canceledBy=", []),
        ("canceledBy=*", [3, 2, 1, 0]),
        ("indexUids=books&types=documentAdditionOrUpdate", [2]),
        ("uids=0,1,2&statuses=enqueued,processing", [2, 1]),
    ],
)
async def test_list_filters(tasks, query, expected):
    assert await uids(tasks, query) == expected


@pytest.mark.parametrize(
    "query, expected",
    [
        (f"afterEnqueuedAt={at(2)}", [3, 2]),  # bounds are exclusive
        (f"beforeEnqueuedAt={at(2)}", [0]),
        ("afterEnqueuedAt=2023-11-14T23:13:20.002%2B01:00", [3, 2]),  # the same instant, written at +01:00
        ("beforeEnqueuedAt=2023-11-14T21:13:20.003-01:00", [1, 0]),
        ("afterEnqueuedAt=2023-11-14t22:13:20.002000001z", [3, 2]),
        ("beforeEnqueuedAt=2023-11-14T22:13:20.002000001Z", [1, 0]),
        ("afterEnqueuedAt=2023-11-14T22:13:20Z", [3, 2, 1, 0]),
        ("afterEnqueuedAt=2023-11-13", [3, 2, 1, 0]),  # after 2023-11-14T00:00Z
        ("afterEnqueuedAt=2023-11-14", []),  # after 2023-11-15T00:00Z
        ("beforeEnqueuedAt=2023-11-14", []),  # before 2023-11-14T00:00Z
        ("beforeEnqueuedAt=2023-11-15", [3, 2, 1, 0]),
        ("afterEnqueuedAt=*&beforeEnqueuedAt=*", [3, 2, 1, 0]),
        ("afterStartedAt=2023-11-13", [1, 0]),  # a null startedAt never matches
        ("beforeStartedAt=2023-11-15", [1, 0]),
        (f"afterStartedAt={at(5)}", [1]),
        ("beforeFinishedAt=2023-11-15", [0]),
        (f"afterFinishedAt={at(4)}", [0]),
        (f"afterFinishedAt={at(5)}", []),
    ],
)
async def test_date_filters(tasks, query, expected):
    assert await uids(tasks, query) == expected


async def test_star_counts_as_a_filter_for_cancel(tasks, service):
    response = await tasks.post("/tasks/cancel?statuses=*")
    assert response.status_code == 202 and response.json()["taskUid"] == 4
    await service.scheduler.tick()
    assert (await tasks.get("/tasks/4")).json()["details"] == {
        "matchedTasks": 4,
        "canceledTasks": 3,
        "originalFilter": "?statuses=*",
    }
    assert await uids(tasks, "canceledBy=4") == [3, 2, 1]


@pytest.mark.parametrize("query", ["uids=*", "indexUids=*", "types=*", "afterEnqueuedAt=*", "canceledBy=*"])
async def test_any_star_is_a_filter_matching_everything_for_delete(tasks, service, query):
    response = await tasks.delete(f"/tasks?{query}")
    assert response.status_code == 202
    await service.scheduler.tick()
    assert (await tasks.get("/tasks/4")).json()["details"] == {
        "matchedTasks": 4,
        "deletedTasks": 1,
        "originalFilter": f"?{query}",
    }
    assert await uids(tasks, "") == [4, 3, 2, 1]


async def test_empty_uids_cancel_nothing(tasks, service):
    assert (await tasks.post("/tasks/cancel?uids=")).status_code == 202
    await service.scheduler.tick()
    assert (await tasks.get("/tasks/4")).json()["details"] == {
        "matchedTasks": 0,
        "canceledTasks": 0,
        "originalFilter": "?uids=",
    }


async def test_a_repeated_parameter_keeps_its_last_value(tasks):
    assert await uids(tasks, "uids=0&uids=2") == [2]
