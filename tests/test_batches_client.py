"""Batches from the Python side: the clients, `taskhub batches`, and a worker's `job.progress(...)`.

Against a real in-process server (and the gateway, whose bodies the clients' `to_dict()` must equal);
the CLI as a real subprocess.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading

from gateway_bodies import post_task
from helpers import finish, start
from taskhub.client import AsyncTaskHubClient, TaskHubClient
from taskhub.client.worker import Job, Worker
from taskhub.errors import TaskHubError
from test_cli import environment


async def _two_batches(http, service) -> None:
    await post_task(http, details={"receivedDocuments": 3})
    await post_task(http, "indexCreation", index_uid="books", details={"primaryKey": None})
    await start(service, 0)
    await finish(service, 0, details={"indexedDocuments": 3})
    await start(service, 1)  # still running: its progress shows


async def test_the_clients_answer_what_the_gateway_answers(http, service):
    await _two_batches(http, service)
    with TaskHubClient(service.grpc_target) as client:
        page = await asyncio.to_thread(client.list_batches)
        assert page.to_dict() == (await http.get("/batches")).json()
        one = await asyncio.to_thread(client.get_batch, 1)
        assert one.to_dict() == (await http.get("/batches/1")).json()
        assert (one.lease_state, one.progress, one.percentage) == ("active", [], 0.0)
        assert [b.uid for b in await asyncio.to_thread(lambda: list(client.iter_batches(page_size=1)))] == [1, 0]
        assert (await asyncio.to_thread(client.list_batches, uids=[0])).to_dict()["total"] == 1
        tasks = await asyncio.to_thread(client.list_tasks, batch_uids=[0])
        assert [(t.uid, t.batch_uid) for t in tasks.results] == [(0, 0)]
        assert (await asyncio.to_thread(client.get_task, 0)).to_dict() == (await http.get("/tasks/0")).json()
    async with AsyncTaskHubClient(service.grpc_target) as client:
        assert (await client.get_batch(0)).to_dict() == (await http.get("/batches/0")).json()
        assert [b.uid async for b in client.iter_batches(reverse=True)] == [0, 1]
        try:
            await client.get_batch(7)
        except TaskHubError as error:
            assert (error.code, error.message) == ("batch_not_found", "Batch `7` not found.")
        else:
            raise AssertionError("no error")


async def _run(service, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskhub.server.cli",
        *args,
        env=environment(TASKHUB_TARGET=service.grpc_target),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode(), err.decode()


async def test_taskhub_batches_list_and_get(http, service):
    await _two_batches(http, service)
    code, out, err = await _run(service, "batches", "list", "--json")
    assert (code, err) == (0, "") and json.loads(out) == (await http.get("/batches")).json()
    code, out, _ = await _run(service, "batches", "get", "0", "--json")
    assert json.loads(out) == (await http.get("/batches/0")).json()
    code, out, _ = await _run(service, "batches", "list", "--statuses", "processing")
    lines = out.splitlines()
    assert lines[0].split() == ["UID", "STATUS", "TYPES", "INDEXES", "TASKS", "STARTED", "(UTC)", "DURATION"]
    assert lines[1].split()[:5] == ["1", "1", "processing", "indexCreation", "books"]
    assert lines[-1] == "1 of 1 batches"
    code, _, err = await _run(service, "batches", "get", "9")
    assert code == 3 and "Batch `9` not found." in err
    code, out, _ = await _run(service, "tasks", "list", "--batch-uids", "0", "--json")
    assert [t["uid"] for t in json.loads(out)["results"]] == [0]


async def test_a_handlers_progress_shows_on_its_batch_while_it_runs(http, service):
    await post_task(http)
    await post_task(http)
    reported, release = threading.Event(), threading.Event()
    problems: list[str] = []

    def handler(job: Job):
        if job.uid == 0:
            return None
        job.progress(("indexing", 30, 120), ("document", 1, 2))
        try:
            job.progress("bad", 0, 0)
        except ValueError as error:
            problems.append(str(error))
        reported.set()
        release.wait(10)
        return None

    worker = Worker(
        service.grpc_target,
        {"documentAdditionOrUpdate": handler},
        poll_seconds=0.2,
        lease_seconds=30,
        progress_seconds=0.05,
    )
    running = asyncio.create_task(worker.run_async(max_batches=1))
    try:
        async with asyncio.timeout(10):
            while True:
                body = (await http.get("/batches/0")).json() if reported.is_set() else None
                if body and body["progress"] and len(body["progress"]["steps"]) == 3:
                    break
                await asyncio.sleep(0.02)
        # One job of two done, then 30/120 of the second job's first step, 1/2 of its second.
        assert body["progress"] == {
            "steps": [
                {"currentStep": "processing tasks", "finished": 1, "total": 2},
                {"currentStep": "indexing", "finished": 30, "total": 120},
                {"currentStep": "document", "finished": 1, "total": 2},
            ],
            "percentage": 100 * (1 / 2 + 30 / 240 + 1 / 480),
        }
        assert problems and "bad" in problems[0]
    finally:
        release.set()
        await running
    body = (await http.get("/batches/0")).json()
    assert (body["progress"], body["stats"]["status"], body["lease"]["state"]) == (
        None,
        {"succeeded": 2},
        "completed",
    )
