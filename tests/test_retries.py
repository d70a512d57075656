"""Retries with backoff: retryable outcomes over gRPC, the server's per-type policy and a task's own, restarts."""

from __future__ import annotations

import dataclasses
import json

import grpc
import pytest
from google.protobuf import duration_pb2

from helpers import details_for, error_of
from taskhub.server import app
from taskhub.server.rules.retries import RetryPolicy, parse_policies
from taskhub.v1 import (
    errors_pb2,
    task_pb2 as T,
    task_service_pb2 as pb,
    task_service_pb2_grpc,
    worker_service_pb2 as wpb,
    worker_service_pb2_grpc,
)

SECOND = 1_000_000
# Every type: 3 attempts, 10 s then 20 s then 40 s (at most 30 s), no jitter; index creations retry at once.
POLICY = json.dumps(
    {
        "*": {"attempts": 3, "initialDelay": "10s", "maxDelay": "30s", "multiplier": 2, "jitter": 0},
        "indexCreation": {"initialDelay": 0},
    }
)
BOOM = errors_pb2.TaskError(
    message="the mail server is away",
    code="smtp_down",
    type="internal",
    link="https://docs.meilisearch.com/errors#smtp_down",
)


@pytest.fixture
def config(config):
    return dataclasses.replace(config, retry_policy=POLICY)


@pytest.fixture
def workers(channel) -> worker_service_pb2_grpc.WorkerServiceStub:
    return worker_service_pb2_grpc.WorkerServiceStub(channel)


def addition(retry: T.RetryPolicy | None = None, index_uid: str = "movies") -> pb.EnqueueTaskRequest:
    request = pb.EnqueueTaskRequest(
        type=T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE,
        index_uid=index_uid,
        details=details_for(T.TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE, received_documents=1),
    )
    if retry is not None:
        request.retry.CopyFrom(retry)
    return request


async def lease(workers) -> wpb.LeaseTasksResponse:
    return await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w"))


async def fail(workers, response: wpb.LeaseTasksResponse, *, retry_after: float | None = None, retryable=True):
    outcomes = []
    for task in response.tasks:
        outcome = wpb.TaskOutcome(uid=task.uid, error=BOOM, retryable=retryable)
        if retry_after is not None:
            outcome.retry_after.FromNanoseconds(int(retry_after * 1e9))
        outcomes.append(outcome)
    return (await workers.CompleteTasks(wpb.CompleteTasksRequest(token=response.lease.token, outcomes=outcomes))).tasks


async def get(stub, uid: int) -> T.Task:
    return (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task


async def test_a_retryable_failure_waits_enqueued_with_backoff_until_attempts_are_spent(stub, workers, clock):
    await stub.EnqueueTask(addition())
    first = await lease(workers)
    [task] = await fail(workers, first)
    failed_at = clock.now
    # Back to enqueued, the error kept aside: `error` stays unset until the task fails for good.
    assert task.status == T.TASK_STATUS_ENQUEUED and not task.HasField("error")
    assert not task.HasField("started_at")
    assert (task.attempts, task.last_error) == (1, BOOM)
    assert abs(task.run_at.ToMicroseconds() - (failed_at + 10 * SECOND)) < 10_000
    assert not (await lease(workers)).tasks  # backing off
    clock.now = task.run_at.ToMicroseconds()
    second = await lease(workers)
    assert [t.uid for t in second.tasks] == [0] and second.tasks[0].attempts == 1
    [task] = await fail(workers, second)
    assert task.attempts == 2
    assert task.run_at.ToMicroseconds() - clock.now == pytest.approx(20 * SECOND, abs=10_000)
    clock.now = task.run_at.ToMicroseconds()
    [task] = await fail(workers, await lease(workers))
    # The third of three attempts: it fails with the last error.
    assert task.status == T.TASK_STATUS_FAILED and task.error == BOOM
    assert task.attempts == 3 and not task.HasField("last_error")
    assert task.details.document_addition_or_update.indexed_documents == 0
    assert await get(stub, 0) == task


async def test_a_success_after_a_retry_keeps_the_count_and_drops_the_last_error(stub, workers, clock):
    await stub.EnqueueTask(addition())
    [task] = await fail(workers, await lease(workers), retry_after=2)
    assert task.run_at.ToMicroseconds() - clock.now == pytest.approx(2 * SECOND, abs=10_000)  # the worker's wait
    clock.now = task.run_at.ToMicroseconds()
    again = await lease(workers)
    done = await workers.CompleteTasks(
        wpb.CompleteTasksRequest(token=again.lease.token, outcomes=[wpb.TaskOutcome(uid=0)])
    )
    [task] = done.tasks
    assert task.status == T.TASK_STATUS_SUCCEEDED and task.attempts == 1
    assert not task.HasField("last_error") and not task.HasField("error")


async def test_a_failure_not_retryable_fails_at_once_as_before(stub, workers):
    await stub.EnqueueTask(addition())
    [task] = await fail(workers, await lease(workers), retryable=False)
    assert task.status == T.TASK_STATUS_FAILED and task.error == BOOM
    assert not task.HasField("attempts") and not task.HasField("run_at")


async def test_a_task_backing_off_holds_no_index(stub, workers, clock):
    await stub.EnqueueTask(addition())
    await stub.EnqueueTask(addition())
    response = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", max_tasks=1))
    await fail(workers, response)
    assert [t.uid for t in (await lease(workers)).tasks] == [1]


async def test_a_task_policy_overrides_the_types(stub, workers, clock):
    await stub.EnqueueTask(addition(T.RetryPolicy(attempts=2, initial_delay=duration_pb2.Duration(seconds=1))))
    [task] = await fail(workers, await lease(workers))
    assert task.run_at.ToMicroseconds() - clock.now == pytest.approx(SECOND, abs=10_000)
    clock.now = task.run_at.ToMicroseconds()
    [task] = await fail(workers, await lease(workers))
    assert task.status == T.TASK_STATUS_FAILED and task.attempts == 2


async def test_the_types_own_policy_applies(stub, workers, clock):
    await stub.EnqueueTask(pb.EnqueueTaskRequest(type=T.TASK_TYPE_INDEX_CREATION, index_uid="movies"))
    [task] = await fail(workers, await lease(workers))
    assert task.run_at.ToMicroseconds() <= clock.now  # initialDelay 0 for index creations: due at once
    assert [t.uid for t in (await lease(workers)).tasks] == [0]


async def test_an_expired_lease_counts_an_attempt_against_the_same_policy(service, stub, workers, clock):
    await stub.EnqueueTask(addition(T.RetryPolicy(attempts=2)))
    response = await workers.LeaseTasks(wpb.LeaseTasksRequest(worker="w", lease_duration={"seconds": 1}))
    clock.now += 2 * SECOND
    await service.scheduler.tick()
    task = await get(stub, 0)
    assert task.status == T.TASK_STATUS_ENQUEUED and task.attempts == 1
    code, reason, _ = await error_of(fail(workers, response))
    assert reason == "lease_lost"
    [task] = await fail(workers, await lease(workers))
    assert task.status == T.TASK_STATUS_FAILED and task.attempts == 2 and task.error == BOOM


async def test_a_retry_survives_a_restart_and_runs_when_due(config, clock):
    service = await app.start(config, background=False, clock=clock)
    async with grpc.aio.insecure_channel(service.grpc_target) as channel:
        stub = task_service_pb2_grpc.TaskServiceStub(channel)
        workers = worker_service_pb2_grpc.WorkerServiceStub(channel)
        await stub.EnqueueTask(addition())
        [task] = await fail(workers, await lease(workers))
    await service.stop(0)
    service = await app.start(config, background=False, clock=clock)
    try:
        assert await service.scheduler.lease(worker="w") is None  # still backing off after the restart
        clock.now = task.run_at.ToMicroseconds()
        again = await service.scheduler.lease(worker="w")
        assert [t.uid for t in again.tasks] == [0]
        assert again.tasks[0].extra["attempts"] == 1
        assert again.tasks[0].extra["lastError"]["code"] == "smtp_down"
    finally:
        await service.stop(0)


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (T.RetryPolicy(attempts=0), "`retry.attempts` must be an integer from 1 to 100."),
        (T.RetryPolicy(attempts=101), "`retry.attempts` must be an integer from 1 to 100."),
        (T.RetryPolicy(multiplier=0.5), "`retry.multiplier` must be a number from 1 to 10."),
        (T.RetryPolicy(jitter=1.5), "`retry.jitter` must be a number from 0 to 1."),
        (
            T.RetryPolicy(initial_delay=duration_pb2.Duration(seconds=2 * 86_400)),
            "`retry.initialDelay` must be a duration from 0 to 1 day(s).",
        ),
        (
            T.RetryPolicy(initial_delay=duration_pb2.Duration(seconds=-1)),
            "Invalid value in parameter `retry.initialDelay`: `-1s 0ns` must be zero or positive.",
        ),
        (
            T.RetryPolicy(max_delay=duration_pb2.Duration(seconds=5), initial_delay=duration_pb2.Duration(seconds=6)),
            "`retry.maxDelay` must be at least `retry.initialDelay`.",
        ),
        (
            # Below the type's initial delay (10 s), which the task does not set.
            T.RetryPolicy(max_delay=duration_pb2.Duration(seconds=5)),
            "`retry.maxDelay` (5s) must be at least `retry.initialDelay` (10s), with the server's policy for"
            " `documentAdditionOrUpdate` filling what the task does not set.",
        ),
    ],
)
async def test_a_policy_out_of_range_is_refused_and_nothing_is_stored(stub, policy, message):
    code, reason, text = await error_of(stub.EnqueueTask(addition(policy)))
    assert (code, reason, text) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_task_retry_policy", message)
    assert (await stub.ListTasks(pb.ListTasksRequest())).total == 0


async def test_a_bad_retry_report_is_refused_and_the_lease_stands(stub, workers):
    await stub.EnqueueTask(addition())
    response = await lease(workers)
    token = response.lease.token
    no_error = wpb.TaskOutcome(uid=0, retryable=True)
    _, reason, text = await error_of(workers.CompleteTasks(wpb.CompleteTasksRequest(token=token, outcomes=[no_error])))
    assert (reason, text) == ("invalid_task_outcome", "Task `0` is retryable but reports no error.")
    too_late = wpb.TaskOutcome(uid=0, error=BOOM, retryable=True, retry_after={"seconds": 400 * 86_400})
    _, reason, text = await error_of(workers.CompleteTasks(wpb.CompleteTasksRequest(token=token, outcomes=[too_late])))
    assert (reason, text) == ("invalid_task_outcome", "The retry of task `0` must come from 0 to 366 days later.")
    assert (await get(stub, 0)).status == T.TASK_STATUS_PROCESSING


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", 'give a JSON object of type name -> policy, such as {"*": {"attempts": 3}}'),
        ('{"*": {"attempts": 0}}', "`*.attempts` must be an integer from 1 to 100."),
        ('{"Bad": {}}', "`Bad` is not a task type's name, nor `*`"),
        ('{"*": {"initialDelay": "soon"}}', "`*.initialDelay`: `soon` is not a duration such as `500ms`,"),
        ('{"*": {"initialDelay": "2h", "maxDelay": "1h"}}', "`*.maxDelay` must be at least `*.initialDelay`."),
        ("{", "--retry-policy is not JSON"),
    ],
)
def test_a_bad_retry_policy_option_is_refused_at_start(text, message):
    with pytest.raises(ValueError) as refused:
        parse_policies(text, 5)
    assert message in str(refused.value)


def test_the_default_policy_takes_max_attempts_and_backs_off_within_its_bounds():
    policies = parse_policies(None, 7)
    assert policies.policy_of("sendEmail") == RetryPolicy(attempts=7)
    policy = RetryPolicy(initial_delay=SECOND, max_delay=5 * SECOND, multiplier=2, jitter=0.5)
    assert [policy.delay(n, draw=0.5) for n in range(1, 6)] == [SECOND, 2 * SECOND, 4 * SECOND, 5 * SECOND, 5 * SECOND]
    assert policy.delay(1, draw=0.0) == SECOND // 2 and policy.delay(3, draw=0.999999) == 5 * SECOND


# -- HTTP --------------------------------------------------------------------


async def test_http_retry_object_is_taken_and_bad_ones_are_400(http, service, clock):
    body = {"type": "indexCreation", "indexUid": "movies", "retry": {"attempts": 4, "initialDelay": "20s"}}
    assert (await http.post("/tasks", json=body)).status_code == 202
    lease = await service.scheduler.lease(worker="w")
    await service.scheduler.complete(
        lease.token, {0: (None, None, {"message": "no", "code": "nope", "type": "internal", "link": ""})}, {0: None}
    )
    task = (await http.get("/tasks/0")).json()
    assert (task["status"], task["error"], task["attempts"]) == ("enqueued", None, 1)
    assert list(task)[-4:] == ["runAt", "attempts", "lastError", "worker"]
    assert task["lastError"] == {
        "message": "no",
        "code": "nope",
        "type": "internal",
        "link": "https://docs.meilisearch.com/errors#nope",
    }
    for retry, message in (
        ({"attempts": "3"}, "`retry.attempts` must be a positive integer."),
        ({"tries": 3}, "`retry.tries` is not a retry policy field"),
        ({"initialDelay": "-1s"}, "`retry.initialDelay`: `-1s` is not a duration"),
        ({"jitter": 2}, "`retry.jitter` must be a number from 0 to 1."),
        ([], "`retry` must be an object of"),
    ):
        response = await http.post("/tasks", json={"type": "indexCreation", "indexUid": "b", "retry": retry})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_task_retry_policy"
        assert response.json()["message"].startswith(message), response.json()["message"]
    assert (await http.get("/tasks")).json()["total"] == 1


async def test_a_registered_type_takes_its_own_policy(config, clock):
    policy = json.dumps({"*": {"jitter": 0}, "sendEmail": {"attempts": 2, "initialDelay": "7s"}})
    service = await app.start(
        dataclasses.replace(config, task_types="sendEmail", retry_policy=policy), background=False, clock=clock
    )
    try:
        send_email = service.scheduler.types.named("sendEmail")
        task = await service.scheduler.enqueue(send_email, None, {"to": "a@b"})
        lease = await service.scheduler.lease(worker="w")
        error = {"message": "smtp", "code": "smtp_down", "type": "internal", "link": ""}
        [task] = await service.scheduler.complete(lease.token, {task.uid: (None, None, error)}, {task.uid: None})
        assert task.extra["runAt"] - clock.now == pytest.approx(7 * SECOND, abs=10_000)
        clock.now = task.extra["runAt"]
        lease = await service.scheduler.lease(worker="w")
        [task] = await service.scheduler.complete(lease.token, {task.uid: (None, None, error)}, {task.uid: None})
        assert (task.status.label, task.extra["attempts"], task.error["code"]) == ("failed", 2, "smtp_down")
    finally:
        await service.stop(0)


async def test_a_policy_for_a_type_no_task_can_have_stops_the_start(config):
    policy = json.dumps({"sendEmial": {"attempts": 2}})
    with pytest.raises(ValueError) as refused:
        await app.start(dataclasses.replace(config, task_types="sendEmail", retry_policy=policy), background=False)
    assert str(refused.value) == (
        "--retry-policy names `sendEmial`, which is neither one of Meilisearch's task types nor one of --task-types"
    )
