"""Expected JSON bodies for the gateway tests: error bodies and fake-clock dates."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import START

LINK = "https://docs.meilisearch.com/errors#"
TASK_KEYS = [
    "uid",
    "indexUid",
    "status",
    "type",
    "canceledBy",
    "details",
    "error",
    "duration",
    "enqueuedAt",
    "startedAt",
    "finishedAt",
]
SUMMARY_KEYS = ["taskUid", "indexUid", "status", "type", "enqueuedAt"]
ERROR_KEYS = ["message", "code", "type", "link"]
STATUSES = "`enqueued`, `processing`, `succeeded`, `failed`, `canceled`"
TYPES = (
    "`indexCreation`, `indexUpdate`, `indexDeletion`, `indexSwap`, `documentAdditionOrUpdate`,"
    " `documentDeletion`, `settingsUpdate`, `dumpCreation`, `taskCancelation`, `taskDeletion`,"
    " `snapshotCreation`"
)
FILTERS = (
    "`uids`, `canceledBy`, `types`, `statuses`, `indexUids`, `afterEnqueuedAt`, `beforeEnqueuedAt`,"
    " `afterStartedAt`, `beforeStartedAt`, `afterFinishedAt`, `beforeFinishedAt`"
)
# Cancel and delete: Meilisearch's list puts `batchUids` after `uids`; GET /tasks's after `reverse`.
MATCHING_FILTERS = "`uids`, `batchUids`, " + FILTERS.removeprefix("`uids`, ")
LIST_FILTERS = "`limit`, `from`, `reverse`, `batchUids`, " + FILTERS
INDEX_UID_RULE = (
    "Index uid can be an integer or a string containing only alphanumeric characters,"
    " hyphens (-) and underscores (_), and can not be more than 400 bytes."
)


def error(code: str, message: str, type_: str = "invalid_request") -> dict:
    return {"message": message, "code": code, "type": type_, "link": LINK + code}


def at(ms: int) -> str:
    """The fake clock's `ms`-th reading (it advances one millisecond per reading)."""
    micros = START + ms * 1_000
    moment = datetime.fromtimestamp(micros // 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros % 1_000_000:06d}Z"


def missing_filters(verb: str) -> dict:
    return error(
        "missing_task_filters",
        f"Query parameters to filter the tasks to {verb} are missing. Available query parameters are:"
        " `uids`, `indexUids`, `statuses`, `types`, `canceledBy`, `beforeEnqueuedAt`, `afterEnqueuedAt`,"
        " `beforeStartedAt`, `afterStartedAt`, `beforeFinishedAt`, `afterFinishedAt`.",
    )


async def post_task(
    http, type_: str = "documentAdditionOrUpdate", index_uid: str | None = "movies", details: dict | None = None
) -> int:
    """Enqueues through `POST /tasks`; answers the new uid."""
    if details is None and type_ == "documentAdditionOrUpdate":
        details = {"receivedDocuments": 10}
    body = {"type": type_, "indexUid": index_uid, "details": details}
    response = await http.post("/tasks", json=body)
    assert response.status_code == 202, response.text
    return response.json()["taskUid"]
