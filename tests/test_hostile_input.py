"""Hostile input: undecodable gRPC messages, bodies that are not UTF-8 JSON, strings too long to keep.

Each is refused with a clear error of its own (INVALID_ARGUMENT, 415 `invalid_content_type`,
400 `malformed_payload`, the parameter's own code), never UNKNOWN, a 500 or a traceback.
"""

from __future__ import annotations

import collections
import logging

import grpc
import pytest

from conftest import MASTER_KEY
from gateway_bodies import error
from helpers import error_of
from taskhub.v1 import (
    key_service_pb2 as kpb,
    key_service_pb2_grpc,
    task_pb2,
    task_service_pb2 as pb,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

MASTER = {"Authorization": f"Bearer {MASTER_KEY}"}
TASK = {"type": "indexCreation", "indexUid": "movies", "details": {"primaryKey": "id"}}
A_KEY = b'{"actions": ["tasks.get"], "indexes": ["movies"], "expiresAt": null}'
JSON = {"content-type": "application/json"}


# -- undecodable gRPC requests --------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "/taskhub.v1.TaskService/ListTasks",
        "/taskhub.v1.TaskService/EnqueueTask",
        "/taskhub.v1.TaskService/WatchTasks",
        "/taskhub.v1.WorkerService/LeaseTasks",
    ],
)
async def test_undecodable_requests_are_invalid_argument(channel, method, caplog):
    # A field 1 of wire type 7, which does not exist: no message can be read from it.
    junk = b"\x0f\xff\xff\xff"
    if method.endswith("WatchTasks"):
        call = channel.unary_stream(method)(junk)
        awaitable = call.read()
    else:
        awaitable = channel.unary_unary(method)(junk)
    with caplog.at_level(logging.DEBUG):
        code, reason, message = await error_of(awaitable)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "bad_request")
    assert message.startswith("The request is not a valid `taskhub.v1.")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


# -- Content-Type and encoding of JSON bodies ---------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16", "application/jsonx"],
)
async def test_json_routes_take_only_json(secured_http, content_type):
    for path, body in (("/tasks", b'{"type": "indexCreation", "indexUid": "movies"}'), ("/keys", A_KEY)):
        response = await secured_http.post(path, content=body, headers={**MASTER, "content-type": content_type})
        assert (response.status_code, response.json()) == (
            415,
            error(
                "invalid_content_type",
                f"The Content-Type `{content_type}` is invalid. Accepted values for the"
                " Content-Type header are: `application/json`",
            ),
        )
    response = await secured_http.patch(
        "/keys/01b4bc42-eb33-4041-b481-254d00cce834",
        content=b'{"name": "a"}',
        headers={**MASTER, "content-type": content_type},
    )
    assert response.status_code == 415
    assert (await secured_http.get("/tasks", headers=MASTER)).json()["total"] == 0


async def test_a_missing_content_type_is_415(secured_http):
    response = await secured_http.post(
        "/tasks", content=b'{"type": "indexCreation", "indexUid": "movies"}', headers=MASTER
    )
    assert (response.status_code, response.json()) == (
        415,
        error(
            "missing_content_type",
            "A Content-Type header is missing. Accepted values for the Content-Type header are: `application/json`",
        ),
    )


async def test_json_with_a_charset_is_taken(http):
    for content_type in ("application/json; charset=utf-8", "Application/JSON;charset=UTF-8"):
        response = await http.post(
            "/tasks", content=b'{"type": "indexCreation", "indexUid": "movies"}', headers={"content-type": content_type}
        )
        assert response.status_code == 202, response.text


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
async def test_bodies_not_in_utf8_are_malformed(secured_http, encoding):
    for path, text in (("/tasks", '{"type": "indexCreation", "indexUid": "movies"}'), ("/keys", A_KEY.decode())):
        response = await secured_http.post(path, content=text.encode(encoding), headers={**MASTER, **JSON})
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "malformed_payload"
        assert response.json()["message"].startswith("The json payload provided is malformed. `")
    assert (await secured_http.get("/tasks", headers=MASTER)).json()["total"] == 0
    assert (await secured_http.get("/keys", headers=MASTER)).json()["total"] == 0


# -- strings too long to keep ---------------------------------------------------


async def test_long_key_names_and_descriptions_are_refused(secured_http, secured_service):
    for field, code, cap in (
        ("name", "invalid_api_key_name", 255),
        ("description", "invalid_api_key_description", 4096),
    ):
        # Counted in characters: `é` takes two bytes of UTF-8, but the cap of them fits.
        body = f'{{"{field}": "{"é" * cap}", "actions": ["tasks.get"], "indexes": ["movies"], "expiresAt": null}}'
        assert (await secured_http.post("/keys", content=body.encode(), headers={**MASTER, **JSON})).status_code == 201
        body = f'{{"{field}": "{"é" * (cap + 1)}", "actions": ["tasks.get"], "indexes": ["movies"], "expiresAt": null}}'
        response = await secured_http.post("/keys", content=body.encode(), headers={**MASTER, **JSON})
        assert (response.status_code, response.json()) == (
            400,
            error(
                code, f"Invalid value at `.{field}`: the {field} of a key is at most {cap} characters, not {cap + 1}."
            ),
        )
    async with grpc.aio.insecure_channel(secured_service.grpc_target) as channel:
        keys = key_service_pb2_grpc.KeyServiceStub(channel)
        metadata = (("authorization", f"Bearer {MASTER_KEY}"),)
        code, reason, _ = await error_of(
            keys.CreateKey(
                kpb.CreateKeyRequest(name="x" * 3_000_000, actions=["tasks.get"], indexes=["movies"]), metadata=metadata
            )
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_api_key_name")
        created = await keys.CreateKey(
            kpb.CreateKeyRequest(name="x" * 255, actions=["*"], indexes=["*"]), metadata=metadata
        )
        code, reason, _ = await error_of(
            keys.UpdateKey(kpb.UpdateKeyRequest(key=created.key.uid, description="x" * 4097), metadata=metadata)
        )
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_api_key_description")
    assert (await secured_http.get("/keys", headers=MASTER)).json()["total"] == 3


async def test_long_filters_are_refused_with_their_own_codes(service, stub):
    cases = [
        (task_pb2.TaskFilter(uids=task_pb2.UidSet(uids=range(10_001))), "invalid_task_uids"),
        (task_pb2.TaskFilter(canceled_by=task_pb2.UidSet(uids=range(10_001))), "invalid_task_canceled_by"),
        (task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["a"] * 10_001)), "invalid_task_index_uids"),
        (task_pb2.TaskFilter(index_uids=task_pb2.IndexUidSet(index_uids=["a" * 3_000_000])), "invalid_task_index_uids"),
    ]
    for filter_, expected in cases:
        for call in (
            stub.ListTasks(pb.ListTasksRequest(filter=filter_)),
            stub.CancelTasks(pb.CancelTasksRequest(filter=filter_)),
        ):
            code, reason, message = await error_of(call)
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, expected)
            assert len(message) < 1000
    assert (await error_of(stub.GetTask(pb.GetTaskRequest(uid=0))))[1] == "task_not_found"


async def test_long_worker_names_are_refused(channel):
    workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
    code, reason, message = await error_of(workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w" * 5_000_000)))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_worker_name")
    assert message == "Invalid value in parameter `worker`: a worker name is at most 256 bytes (UTF-8), not 5000000."
    assert (await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w" * 256))).tasks == []


async def test_calls_to_unknown_methods_leave_nothing_behind(channel):
    from taskhub.server.edge import decoding

    # The servicers' handlers, guarded as app.start registers them; a caller names methods at will.
    handler = grpc.method_handlers_generic_handler(
        "taskhub.v1.TaskService", {"GetTask": grpc.unary_unary_rpc_method_handler(lambda request, context: None)}
    )
    guarded = decoding._GuardedGeneric(handler)
    details = collections.namedtuple("Details", "method invocation_metadata")
    for i in range(50):
        assert guarded.service(details(f"/taskhub.v1.TaskService/Nope{i}", ())) is None
    assert guarded.service(details("/taskhub.v1.TaskService/GetTask", ())) is not None
    assert len(guarded.cache) == 1
    # And through a real server: an unknown method is UNIMPLEMENTED.
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await channel.unary_unary("/taskhub.v1.TaskService/Nope")(b"")
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
