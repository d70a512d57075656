"""`POST /tasks`: Meilisearch-style JSON bodies enqueue tasks; bad bodies get clear 400s."""

from __future__ import annotations

import dataclasses
import sys

import httpx
import pytest

from gateway_bodies import ERROR_KEYS, INDEX_UID_RULE, TYPES, at, error
from taskhub.server import app


async def test_type_is_case_insensitive_and_global_tasks_have_no_index(http):
    response = await http.post("/tasks", json={"type": "DUMPCREATION"})
    assert (response.status_code, response.json()) == (
        202,
        {"taskUid": 0, "indexUid": None, "status": "enqueued", "type": "dumpCreation", "enqueuedAt": at(1)},
    )
    response = await http.post("/tasks", json={"type": "indexCreation", "indexUid": "movies", "details": None})
    assert (response.status_code, response.json()["type"]) == (202, "indexCreation")


def invalid_details(message: str) -> dict:
    return error("invalid_task_details", message)


BAD_BODIES = [
    (
        b"",
        error(
            "bad_request", "The request body is empty; expected a JSON object with `type`, `indexUid` and `details`."
        ),
    ),
    (
        b"{",
        error(
            "bad_request",
            "The request body is not valid JSON: Expecting property name enclosed in double"
            " quotes: line 1 column 2 (char 1).",
        ),
    ),
    (b'{"type": NaN}', error("bad_request", "The request body is not valid JSON: `NaN` is not a JSON number.")),
    (
        b'{"type": "settingsUpdate", "indexUid": "a", "details": {"x": 1e400}}',
        error("bad_request", "The request body is not valid JSON: `1e400` is not a JSON number."),
    ),
    (b"[1]", error("bad_request", "The request body must be a JSON object with `type`, `indexUid` and `details`.")),
    (b'{"indexUid": "movies"}', error("bad_request", "Missing field `type`")),
    (
        b'{"type": "dumpCreation", "uid": 3}',
        error("bad_request", "Unknown field `uid`: expected one of `type`, `indexUid`, `details`, `runAt`, `retry`"),
    ),
    (b'{"type": 5}', error("bad_request", "`type` must be a string, such as `documentAdditionOrUpdate`.")),
    (
        b'{"type": "doggo"}',
        error(
            "invalid_task_types",
            f"Invalid value in parameter `type`: `doggo` is not a valid task type. Available types are {TYPES}.",
        ),
    ),
    (b'{"type": "indexCreation", "indexUid": 5}', error("bad_request", "`indexUid` must be a string or null.")),
    (
        b'{"type": "indexCreation", "indexUid": "\\ud800"}',
        error("bad_request", "`indexUid` is not valid Unicode text."),
    ),
    (
        b'{"type": "indexCreation", "indexUid": "the good doggo"}',
        error("invalid_index_uid", f"`the good doggo` is not a valid index uid. {INDEX_UID_RULE}"),
    ),
    (b'{"type": "indexCreation"}', error("invalid_index_uid", "`indexCreation` needs an index uid.")),
    (
        b'{"type": "dumpCreation", "indexUid": "movies"}',
        error("invalid_index_uid", "`dumpCreation` is a global task and takes no index uid."),
    ),
    (
        b'{"type": "taskCancelation"}',
        error(
            "invalid_task_type", "`taskCancelation` tasks are enqueued by canceling or deleting tasks, not directly."
        ),
    ),
    (
        b'{"type": "indexCreation", "indexUid": "a", "details": []}',
        invalid_details("`details` must be an object or null."),
    ),
    (
        b'{"type": "documentAdditionOrUpdate", "indexUid": "a"}',
        invalid_details("`receivedDocuments` is required for a `documentAdditionOrUpdate` task."),
    ),
    (
        b'{"type": "documentAdditionOrUpdate", "indexUid": "a", "details": {"receivedDocuments": -1}}',
        invalid_details("`details.receivedDocuments` must be a non-negative integer or null."),
    ),
    (
        b'{"type": "documentAdditionOrUpdate", "indexUid": "a", "details": {"receivedDocuments": true}}',
        invalid_details("`details.receivedDocuments` must be a non-negative integer or null."),
    ),
    (
        b'{"type": "documentAdditionOrUpdate", "indexUid": "a", "details": {"receivedDocuments": 1.5}}',
        invalid_details("`details.receivedDocuments` must be a non-negative integer or null."),
    ),
    (
        b'{"type": "documentAdditionOrUpdate", "indexUid": "a", "details": {"primaryKey": "id"}}',
        invalid_details(
            "`details.primaryKey` is not a detail of a `documentAdditionOrUpdate` task; its details are"
            " `receivedDocuments`, `indexedDocuments`."
        ),
    ),
    (
        b'{"type": "documentAdditionOrUpdate", "indexUid": "a", "details": {"receivedDocuments": 1,'
        b' "indexedDocuments": 1}}',
        invalid_details(
            "`indexedDocuments` cannot be given for a `documentAdditionOrUpdate` task; it takes: `receivedDocuments`."
        ),
    ),
    (
        b'{"type": "indexCreation", "indexUid": "a", "details": {"primaryKey": 5}}',
        invalid_details("`details.primaryKey` must be a string or null."),
    ),
    (
        b'{"type": "indexSwap", "details": {"swaps": [{"indexes": ["a"]}]}}',
        invalid_details("Each swap names exactly two indexes, not 1."),
    ),
    (
        b'{"type": "indexSwap", "details": {"swaps": [["a", "b"]]}}',
        invalid_details('`details.swaps` must be a list of objects like `{"indexes": ["a", "b"]}`.'),
    ),
    (
        b'{"type": "indexSwap", "details": {"swaps": {"indexes": ["a", "b"]}}}',
        invalid_details('`details.swaps` must be a list of objects like `{"indexes": ["a", "b"]}`.'),
    ),
    (b'{"type": "snapshotCreation", "details": {"x": 1}}', invalid_details("`snapshotCreation` takes no details.")),
    (
        b'{"type": "settingsUpdate", "indexUid": "a", "details": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}",
        invalid_details("`details` nests deeper than 32 levels."),
    ),
    (
        b'{"type": "settingsUpdate", "indexUid": "a", "details": {"x": 1' + b"0" * 400 + b"}}",
        invalid_details("`details` holds an integer past ±1.7976931348623157e+308, the largest a double holds."),
    ),
    (b"[" * 100_000, None),  # too deep for Python's parser: still a 400
]


@pytest.mark.parametrize("body, expected", BAD_BODIES)
async def test_bad_bodies_are_400_and_store_nothing(http, body, expected):
    response = await http.post("/tasks", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert list(response.json()) == ERROR_KEYS
    if expected is not None:
        assert response.json() == expected
    assert (await http.get("/tasks")).json()["total"] == 0


@pytest.fixture
async def live(config):
    """The gateway under uvicorn on 127.0.0.1, for requests over a real socket."""
    service = await app.start(dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0"))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.gateway.port}") as client:
        yield client
    await service.stop(0)


def _settings(number: bytes) -> bytes:
    return b'{"type": "settingsUpdate", "indexUid": "a", "details": {"x": ' + number + b"}}"


async def _post(client, body: bytes):
    return await client.post("/tasks", content=body, headers={"content-type": "application/json"})


async def test_an_integer_too_large_for_a_double_is_400_over_http(live):
    response = await _post(live, _settings(b"1" + b"0" * 400))
    assert (response.status_code, response.json()["code"]) == (400, "invalid_task_details")
    response = await _post(live, _settings(repr(sys.float_info.max).encode()))
    assert response.status_code == 202


async def test_a_number_past_the_largest_double_is_400_even_when_it_rounds_to_it(live):
    # The document says settings numbers lie within ±1.7976931348623157e308: one past it, written as an
    # integer or with a longer fraction, is refused even though a double would round it to that bound.
    for number in (
        str(int(sys.float_info.max) + 1),
        "-" + str(int(sys.float_info.max) + 1),
        "1.7976931348623158e308",
        "-1.79769313486231571e308",
    ):
        response = await _post(live, _settings(number.encode()))
        assert response.status_code == 400, number
    assert (await live.get("/tasks")).json()["total"] == 0
