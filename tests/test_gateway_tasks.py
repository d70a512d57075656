"""The gateway's task routes end to end: whole JSON bodies, key order, paging and filters.

The gateway runs in-process (httpx.ASGITransport) in front of a real gRPC server over a
real SQLite file; the fake clock makes every date predictable (`at(n)` is its n-th reading).
"""

from __future__ import annotations

from gateway_bodies import SUMMARY_KEYS, TASK_KEYS, at, error, post_task
from helpers import finish, start


async def test_health_is_available(http):
    response = await http.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "available"})


async def test_enqueue_answers_a_summary_and_get_the_full_task(http):
    response = await http.post(
        "/tasks",
        json={"type": "documentAdditionOrUpdate", "indexUid": "movies", "details": {"receivedDocuments": 67493}},
    )
    assert response.status_code == 202
    assert response.json() == {
        "taskUid": 0,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "enqueuedAt": at(1),
    }
    assert list(response.json()) == SUMMARY_KEYS

    response = await http.get("/tasks/0")
    assert response.status_code == 200
    assert response.json() == {
        "uid": 0,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 67493, "indexedDocuments": None},
        "error": None,
        "duration": None,
        "enqueuedAt": at(1),
        "startedAt": None,
        "finishedAt": None,
    }
    assert list(response.json()) == TASK_KEYS
    assert list(response.json()["details"]) == ["receivedDocuments", "indexedDocuments"]


async def test_processing_and_succeeded_tasks(http, service):
    await post_task(http, details={"receivedDocuments": 100})
    await start(service, 0)
    body = (await http.get("/tasks/0")).json()
    assert (body["status"], body["startedAt"], body["finishedAt"], body["duration"]) == (
        "processing",
        at(2),
        None,
        None,
    )

    await finish(service, 0, details={"indexedDocuments": 100})
    assert (await http.get("/tasks/0")).json() == {
        "uid": 0,
        "indexUid": "movies",
        "status": "succeeded",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 100, "indexedDocuments": 100},
        "error": None,
        "duration": "PT0.001S",
        "enqueuedAt": at(1),
        "startedAt": at(2),
        "finishedAt": at(3),
        "batchUid": 0,  # the lease's batch, after Meilisearch's keys
        "worker": "tests",  # the worker that held it
    }


async def test_failed_task_has_its_error_and_zeroed_counters(http, service):
    await post_task(http, details={"receivedDocuments": 5})
    await start(service, 0)
    failure = {
        "message": "Document does not have a `:primaryKey` attribute.",
        "code": "missing_document_id",
        "type": "invalid_request",
        "link": "https://docs.meilisearch.com/errors#missing_document_id",
    }
    await finish(service, 0, error=failure)
    body = (await http.get("/tasks/0")).json()
    assert body == {
        "uid": 0,
        "indexUid": "movies",
        "status": "failed",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 5, "indexedDocuments": 0},
        "error": failure,
        "duration": "PT0.001S",
        "enqueuedAt": at(1),
        "startedAt": at(2),
        "finishedAt": at(3),
        "batchUid": 0,
        "worker": "tests",
    }
    assert list(body["error"]) == ["message", "code", "type", "link"]


async def test_cancel_answers_202_and_the_cancelation_runs(http, service):
    await post_task(http)
    await post_task(http)
    response = await http.post("/tasks/cancel?uids=0&statuses=enqueued%2Cprocessing")
    assert response.status_code == 202
    assert response.json() == {
        "taskUid": 2,
        "indexUid": None,
        "status": "enqueued",
        "type": "taskCancelation",
        "enqueuedAt": at(3),
    }
    assert list(response.json()) == SUMMARY_KEYS
    assert (await http.get("/tasks/2")).json()["details"] == {
        "matchedTasks": 1,
        "canceledTasks": None,
        "originalFilter": "?uids=0&statuses=enqueued%2Cprocessing",
    }

    await service.scheduler.tick(service.scheduler.clock())  # reading 4
    assert (await http.get("/tasks/0")).json() == {
        "uid": 0,
        "indexUid": "movies",
        "status": "canceled",
        "type": "documentAdditionOrUpdate",
        "canceledBy": 2,
        "details": {"receivedDocuments": 10, "indexedDocuments": 0},
        "error": None,
        "duration": None,
        "enqueuedAt": at(1),
        "startedAt": None,
        "finishedAt": at(4),
        "batchUid": 0,  # canceled while enqueued, it joins the cancelation's batch (as in Meilisearch)
    }
    assert (await http.get("/tasks/2")).json() == {
        "uid": 2,
        "indexUid": None,
        "status": "succeeded",
        "type": "taskCancelation",
        "canceledBy": None,
        "details": {"matchedTasks": 1, "canceledTasks": 1, "originalFilter": "?uids=0&statuses=enqueued%2Cprocessing"},
        "error": None,
        "duration": "PT0S",
        "enqueuedAt": at(3),
        "startedAt": at(4),
        "finishedAt": at(4),
        "batchUid": 0,
    }
    assert (await http.get("/tasks/1")).json()["status"] == "enqueued"
    assert [t["uid"] for t in (await http.get("/tasks?canceledBy=2")).json()["results"]] == [0]


async def test_delete_answers_202_and_deleted_tasks_are_gone(http, service):
    await post_task(http)
    await start(service, 0)
    await finish(service, 0)
    await post_task(http)
    response = await http.delete("/tasks?statuses=succeeded")
    assert response.status_code == 202
    assert response.json() == {
        "taskUid": 2,
        "indexUid": None,
        "status": "enqueued",
        "type": "taskDeletion",
        "enqueuedAt": at(5),
    }
    await service.scheduler.tick(service.scheduler.clock())
    assert (await http.get("/tasks/0")).status_code == 404
    assert (await http.get("/tasks/2")).json()["details"] == {
        "matchedTasks": 1,
        "deletedTasks": 1,
        "originalFilter": "?statuses=succeeded",
    }
    assert (await http.get("/tasks/1")).json()["status"] == "enqueued"


async def test_details_of_every_type_in_meilisearch_order(http, service):
    cases = [
        (
            "documentDeletion",
            "movies",
            {"providedIds": 3},
            {"providedIds": 3, "deletedDocuments": None, "originalFilter": None},
        ),
        (
            "documentDeletion",
            "movies",
            {"originalFilter": "genre = horror"},
            {"providedIds": 0, "deletedDocuments": None, "originalFilter": "genre = horror"},
        ),
        ("indexCreation", "movies", {"primaryKey": "id"}, {"primaryKey": "id"}),
        ("indexUpdate", "movies", None, {"primaryKey": None}),
        ("indexDeletion", "movies", None, {"deletedDocuments": None}),
        (
            "indexSwap",
            None,
            {"swaps": [{"indexes": ["a", "b"]}, {"indexes": ["c", "d"]}]},
            {"swaps": [{"indexes": ["a", "b"]}, {"indexes": ["c", "d"]}]},
        ),
        ("dumpCreation", None, None, {"dumpUid": None}),
        ("snapshotCreation", None, None, None),
    ]
    for uid, (type_, index_uid, details, expected) in enumerate(cases):
        assert await post_task(http, type_, index_uid, details) == uid
        body = (await http.get(f"/tasks/{uid}")).json()
        assert (body["type"], body["indexUid"], body["details"]) == (type_, index_uid, expected)
        if expected is not None:
            assert list(body["details"]) == list(expected)


async def test_settings_come_back_as_submitted_in_meilisearch_order(http):
    settings = {
        "pagination": {"maxTotalHits": 5},
        "stopWords": ["the"],
        "rankingRules": ["typo", "words"],
        "typoTolerance": {"minWordSizeForTypos": {"oneTypo": 4, "twoTypos": 9}, "enabled": True},
        "searchCutoffMs": 150.5,
        "distinctAttribute": None,
    }
    await post_task(http, "settingsUpdate", "movies", settings)
    details = (await http.get("/tasks/0")).json()["details"]
    assert details == settings
    assert type(details["pagination"]["maxTotalHits"]) is int
    assert list(details) == [
        "rankingRules",
        "stopWords",
        "distinctAttribute",
        "typoTolerance",
        "pagination",
        "searchCutoffMs",
    ]


async def test_server_run_tasks_finish_with_their_details(http, service):
    await post_task(http, "dumpCreation", None)
    await post_task(http, "snapshotCreation", None)
    await service.scheduler.tick()
    dump, snapshot = (await http.get("/tasks/0")).json(), (await http.get("/tasks/1")).json()
    assert dump["status"] == snapshot["status"] == "succeeded"
    assert len(dump["details"]["dumpUid"]) == len("20231114-221320004") and snapshot["details"] is None


async def test_list_answers_results_total_limit_from_next(http):
    for _ in range(3):
        await post_task(http)
    response = await http.get("/tasks")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["results", "total", "limit", "from", "next"]
    assert [list(task) for task in body["results"]] == [TASK_KEYS] * 3
    assert {k: v for k, v in body.items() if k != "results"} == {"total": 3, "limit": 20, "from": 2, "next": None}
    assert body["results"][0] == {
        "uid": 2,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 10, "indexedDocuments": None},
        "error": None,
        "duration": None,
        "enqueuedAt": at(3),
        "startedAt": None,
        "finishedAt": None,
    }
    assert (await http.get("/tasks?limit=2&from=1")).json() == {
        "results": body["results"][1:],
        "total": 3,
        "limit": 2,
        "from": 1,
        "next": None,
    }
    # Read as Meilisearch reads them (Rust's u32 `from_str`), and as the OpenAPI descriptions say.
    assert (await http.get("/tasks?limit=%2B2&from=001")).json() == {
        "results": body["results"][1:],
        "total": 3,
        "limit": 2,
        "from": 1,
        "next": None,
    }
    assert (await http.get("/tasks?limit=0")).json() == {"results": [], "total": 3, "limit": 0, "from": None, "next": 2}
    assert (await http.get("/tasks?statuses=failed")).json() == {
        "results": [],
        "total": 0,
        "limit": 20,
        "from": None,
        "next": None,
    }


async def _walk(http, query: str) -> list[int]:
    seen, url = [], f"/tasks?{query}"
    while True:
        body = (await http.get(url)).json()
        assert body["total"] == 25 and body["limit"] == 7
        seen += [task["uid"] for task in body["results"]]
        assert body["from"] == (body["results"][0]["uid"] if body["results"] else None)
        if body["next"] is None:
            return seen
        url = f"/tasks?{query}&from={body['next']}"


async def test_paging_walks_every_task_once_in_both_orders(http):
    for _ in range(25):
        await post_task(http)
    assert await _walk(http, "limit=7") == list(range(24, -1, -1))
    assert await _walk(http, "limit=7&reverse=true") == list(range(25))
    assert await _walk(http, "limit=7&reverse=false") == list(range(24, -1, -1))


async def test_trailing_slashes_are_tolerated(http):
    await post_task(http)
    assert (await http.get("/tasks/")).json()["total"] == 1
    assert (await http.get("/tasks/0/")).json()["uid"] == 0
    assert (await http.get("/tasks//0")).json()["uid"] == 0
    response = await http.post("/tasks/cancel/?uids=0")
    assert response.status_code == 202
    assert (await http.get("/tasks/1")).json()["details"]["originalFilter"] == "?uids=0"


async def test_missing_task_is_404_and_a_bad_uid_400(http):
    response = await http.get("/tasks/9")
    assert response.status_code == 404
    assert response.json() == error("task_not_found", "Task `9` not found.")
    for raw in ("doggo", "-1", "4294967296", "1.5", "%E2%91%A0"):
        response = await http.get(f"/tasks/{raw}")
        shown = "①" if raw.startswith("%") else raw
        assert response.status_code == 400
        assert response.json() == error(
            "invalid_task_uids", f"Task uid `{shown}` is invalid. It should only contain numeric characters."
        )
