"""Payload limits (SPEC §10): bodies and details over `--http-payload-size-limit`, and pages of big tasks.

HTTP bodies are refused with 413 `payload_too_large` while they stream in (with or
without Content-Length); gRPC messages over the server's receive limit get gRPC's own
RESOURCE_EXHAUSTED, and details over the limit INVALID_ARGUMENT `payload_too_large`.
A page of tasks is bounded in bytes too: a page cut short sets `next`.
"""

from __future__ import annotations

import dataclasses
import json

import grpc
import httpx
import pytest

from helpers import T, error_of
from taskhub.server import app
from taskhub.server.model import TaskType
from taskhub.v1 import task_service_pb2 as pb, task_service_pb2_grpc

MIB = 1024 * 1024
TOO_LARGE = {
    "message": "The provided payload reached the size limit. The maximum accepted payload size is 1 MiB.",
    "code": "payload_too_large",
    "type": "invalid_request",
    "link": "https://docs.meilisearch.com/errors#payload_too_large",
}


def settings_body(size: int) -> bytes:
    """A `POST /tasks` body of about `size` bytes: a settingsUpdate with one long string."""
    return json.dumps(
        {"type": "settingsUpdate", "indexUid": "movies", "details": {"displayedAttributes": ["x" * size]}}
    ).encode()


@pytest.fixture
async def served(config):
    """The whole service with its gateway under uvicorn on a real port."""
    service = await app.start(dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0"))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.gateway.port}", timeout=30) as client:
        yield service, client
    await service.stop(0)


async def test_a_body_over_the_limit_is_413(served):
    service, client = served
    response = await client.post(
        "/tasks", content=settings_body(MIB + 10), headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert (await client.get("/tasks")).json()["total"] == 0


async def test_a_chunked_body_over_the_limit_is_413(served):
    service, client = served
    body = settings_body(2 * MIB)

    async def chunks():
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await client.post("/tasks", content=chunks(), headers={"content-type": "application/json"})
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    assert (await client.get("/tasks")).json()["total"] == 0


async def test_a_body_just_under_the_limit_is_taken(served):
    service, client = served
    body = settings_body(MIB - 200)
    assert len(body) <= MIB
    response = await client.post("/tasks", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202
    task = (await client.get("/tasks/0")).json()
    assert len(task["details"]["displayedAttributes"][0]) == MIB - 200


async def test_the_gateway_stops_reading_at_the_limit():
    """Straight through the ASGI interface: the body is not pulled past the limit."""
    from taskhub.gateway.app import create_app

    gateway = create_app("127.0.0.1:1", payload_limit=MIB)
    pulled = 0

    async def receive():
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * (256 * 1024), "more_body": pulled < 400}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/tasks",
        "raw_path": b"/tasks",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 7700),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "app": gateway,
    }
    await gateway(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:])) == TOO_LARGE
    assert pulled <= 5  # 1 MiB is four chunks: one more shows it is over


async def test_the_limit_is_a_setting(config):
    service = await app.start(
        dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0", http_payload_size_limit="2MiB")
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.gateway.port}", timeout=30) as client:
            ok = await client.post(
                "/tasks", content=settings_body(MIB + 10), headers={"content-type": "application/json"}
            )
            assert ok.status_code == 202
            refused = await client.post(
                "/tasks", content=settings_body(2 * MIB + 10), headers={"content-type": "application/json"}
            )
            assert refused.status_code == 413
            assert refused.json()["message"] == (
                "The provided payload reached the size limit. The maximum accepted payload size is 2 MiB."
            )
    finally:
        await service.stop(0)


def settings_request(size: int, text: str = "x") -> pb.EnqueueTaskRequest:
    request = pb.EnqueueTaskRequest(type=T.TASK_TYPE_SETTINGS_UPDATE, index_uid="movies")
    request.details.settings_update.settings.update({"displayedAttributes": [text * size]})
    return request


async def test_grpc_details_over_the_limit_are_invalid(service, stub):
    # Quotes: small in protobuf, each doubled in JSON, so the message passes the receive limit.
    code, reason, message = await error_of(stub.EnqueueTask(settings_request(600 * 1024, '"')))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large")
    assert message == ("The provided payload reached the size limit. The maximum accepted payload size is 1 MiB.")
    code, reason, _ = await error_of(
        stub.EnqueueTasks(pb.EnqueueTasksRequest(tasks=[settings_request(10), settings_request(600 * 1024, '"')]))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "payload_too_large")
    assert (await error_of(stub.GetTask(pb.GetTaskRequest(uid=0))))[1] == "task_not_found"


async def test_grpc_messages_over_the_receive_limit_are_resource_exhausted(service):
    async with grpc.aio.insecure_channel(
        service.grpc_target, options=[("grpc.max_send_message_length", 256 * MIB)]
    ) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.EnqueueTask(settings_request(20 * MIB))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (await error_of(stub.GetTask(pb.GetTaskRequest(uid=0))))[1] == "task_not_found"


async def big_tasks(service, count: int, size: int) -> list[int]:
    """Tasks with big details, stored as an older server (or a larger limit) let them in."""
    uids = []
    for _ in range(count):
        task = await service.scheduler.enqueue(
            TaskType.SETTINGS_UPDATE, "movies", {"displayedAttributes": ["x" * size]}
        )
        uids.append(task.uid)
    return uids


async def test_pages_of_big_tasks_are_cut_and_next_follows(service, http):
    uids = await big_tasks(service, 7, 10 * MIB)
    uids += [
        (await service.scheduler.enqueue(TaskType.INDEX_CREATION, "small", {"primaryKey": None})).uid for _ in range(3)
    ]
    seen, url, pages = [], "/tasks", 0
    while True:
        response = await http.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        pages += 1
        assert body["results"], "a page is never empty while tasks remain"
        seen += [task["uid"] for task in body["results"]]
        assert body["total"] == 10
        if body["next"] is None:
            break
        assert body["next"] == seen[-1] - 1
        url = f"/tasks?from={body['next']}"
    assert sorted(seen) == sorted(uids) and len(seen) == len(set(seen))
    assert pages > 1


async def test_grpc_pages_of_big_tasks_are_cut_both_ways(service):
    uids = await big_tasks(service, 7, 10 * MIB)
    async with grpc.aio.insecure_channel(
        service.grpc_target, options=[("grpc.max_receive_message_length", 64 * MIB)]
    ) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        for reverse in (False, True):
            seen, start = [], None
            while True:
                request = pb.ListTasksRequest(reverse=reverse, limit=50)
                if start is not None:
                    setattr(request, "from", start)
                page = await stub.ListTasks(request)
                assert page.results
                seen += [task.uid for task in page.results]
                if not page.HasField("next"):
                    break
                start = page.next
            assert seen == sorted(uids, reverse=not reverse)
