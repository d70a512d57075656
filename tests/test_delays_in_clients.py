"""Delayed runs and retries from the Python client and `taskhub tasks enqueue`, against a server on the wall clock."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from taskhub.client import AsyncTaskHubClient, TaskError, TaskHubError
from taskhub.server import app
from test_cli import CLI

HOUR = 3_600


@pytest.fixture
async def service(config):
    """The wall clock: the clients' `--delay` and `delay=` count from it."""
    running = await app.start(config, background=False)
    yield running
    await running.stop(0)


def seconds_from_now(moment: datetime) -> float:
    return (moment - datetime.now(UTC)).total_seconds()


async def test_the_async_client_delays_sets_a_policy_and_reads_attempts_back(service):
    async with AsyncTaskHubClient(service.grpc_target) as client:
        summary = await client.enqueue("indexCreation", "movies", delay=timedelta(hours=1))
        task = await client.get_task(summary.task_uid)
        assert HOUR - 5 < seconds_from_now(task.run_at) <= HOUR
        assert (task.attempts, task.last_error) == (None, None)
        assert list(task.to_dict())[-2:] == ["finishedAt", "runAt"]

        at = datetime(2030, 1, 1, tzinfo=UTC)
        with pytest.raises(TaskHubError) as refused:
            await client.enqueue("indexCreation", "movies", run_at=at)  # years ahead
        assert refused.value.code == "invalid_task_run_at"
        with pytest.raises(TaskHubError) as refused:
            await client.enqueue("indexCreation", "movies", retry={"attempts": 1_000})
        assert refused.value.code == "invalid_task_retry_policy"

        summary = await client.enqueue("indexCreation", "books", retry={"attempts": 2, "initialDelay": "5m"})
        lease = await service.scheduler.lease(worker="w", index_uids=frozenset({"books"}))
        error = {"message": "busy", "code": "busy", "type": "internal", "link": ""}
        await service.scheduler.complete(lease.token, {summary.task_uid: (None, None, error)}, {summary.task_uid: None})
        task = await client.get_task(summary.task_uid)
        assert task.status.value == "enqueued" and task.error is None and task.attempts == 1
        assert task.last_error == TaskError("busy", "busy", "internal", "https://docs.meilisearch.com/errors#busy")
        assert 5 * 60 * 0.85 <= seconds_from_now(task.run_at) <= 5 * 60 * 1.15  # the jitter: 10% either way
        assert list(task.to_dict())[-4:] == ["runAt", "attempts", "lastError", "worker"]


async def test_the_cli_takes_run_at_delay_and_retry(service, tmp_path):
    cli = CLI(service.grpc_target)
    run_at = (datetime.now(UTC) + timedelta(minutes=10)).replace(microsecond=0)
    summary = await cli.json("enqueue", "indexCreation", "--index-uid", "a", "--run-at", run_at.isoformat())
    task = await cli.json("get", str(summary["taskUid"]))
    assert task["runAt"] == run_at.strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    summary = await cli.json(
        "enqueue", "indexCreation", "--index-uid", "b", "--delay", "2h", "--retry", '{"attempts": 3}'
    )
    task = await cli.json("get", str(summary["taskUid"]))
    assert 2 * HOUR - 10 < seconds_from_now(datetime.fromisoformat(task["runAt"])) <= 2 * HOUR

    lines = tmp_path / "tasks.jsonl"
    later = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines.write_text(
        json.dumps({"type": "indexCreation", "indexUid": "c", "runAt": later, "retry": {"jitter": 0}})
        + "\n"
        + json.dumps({"type": "indexCreation", "indexUid": "d"})
        + "\n"
    )
    code, out, err = await cli("enqueue", "--file", str(lines), "--json")
    assert (code, err) == (0, ""), err
    first, second = (json.loads(line) for line in out.splitlines())
    assert "runAt" in await cli.json("get", str(first["taskUid"]))
    assert "runAt" not in await cli.json("get", str(second["taskUid"]))

    for args, message in (
        (("--run-at", "tomorrow"), "--run-at: `tomorrow` is not an RFC 3339 date-time"),
        (("--run-at", "2030-01-01"), "--run-at: `2030-01-01` is not an RFC 3339 date-time"),
        (("--delay", "soon"), "--delay: `soon` is not a duration"),
        (("--delay", "1s", "--run-at", later), "give --run-at or --delay, not both"),
    ):
        code, out, err = await cli("enqueue", "indexCreation", "--index-uid", "e", *args)
        assert code == 2 and message in err, err
    code, out, err = await cli("enqueue", "indexCreation", "--index-uid", "e", "--delay", "400d")
    assert code != 0 and "invalid_task_run_at" in err + out
    code, out, err = await cli("enqueue", "indexCreation", "--index-uid", "e", "--retry", '{"jitter": 3}')
    assert code != 0 and "`retry.jitter` must be a number from 0 to 1." in err
    assert len((await cli.json("list"))["results"]) == 4


async def test_a_waiting_task_is_leased_by_a_client_side_delay(service):
    """The smallest round trip: a delay of 300 ms from the client, a lease call already waiting."""
    async with AsyncTaskHubClient(service.grpc_target) as client:
        waiting = asyncio.create_task(service.scheduler.lease(worker="w", wait=5.0))
        await asyncio.sleep(0.05)
        await client.enqueue("indexCreation", "movies", delay=0.3)
        started = time.monotonic()
        lease = await waiting
        assert [t.uid for t in lease.tasks] == [0]
        assert 0.2 < time.monotonic() - started < 1.0
