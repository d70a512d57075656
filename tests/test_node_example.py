"""The Node.js example (examples/node) against a real server: the protos serve a second language."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import subprocess

import pytest

import helpers
from taskhub.client import AsyncTaskHubClient

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "node"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.slow,
]  # runs the example under node


@pytest.fixture(scope="module")
def node_modules() -> None:
    """Installs the example's locked dependencies once, if they are missing."""
    if (EXAMPLE / "node_modules" / "@grpc" / "grpc-js").is_dir():
        return
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EXAMPLE, check=True, timeout=300)


async def test_node_enqueues_watches_lists_and_reads_errors(service, node_modules):
    node = await asyncio.create_subprocess_exec(
        "node",
        str(EXAMPLE / "taskhub-example.js"),
        "--target",
        service.grpc_target,
        "--index",
        "movies",
        "--documents",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    async def event() -> dict:
        line = await asyncio.wait_for(node.stdout.readline(), 20)
        assert line, (await node.stderr.read()).decode()
        return json.loads(line)

    try:
        assert await event() == {
            "event": "enqueued",
            "task": {
                "taskUid": 0,
                "indexUid": "movies",
                "status": "enqueued",
                "type": "documentAdditionOrUpdate",
                "enqueuedAt": "2023-11-14T22:13:20.001000Z",
            },
        }
        first = await event()
        assert (first["event"], first["task"]["status"]) == ("state", "enqueued")
        await helpers.start(service, 0)
        await helpers.finish(service, 0, details={"indexedDocuments": 3})
        states = [first, await event(), await event()]
        listing, error = await event(), await event()
        assert await asyncio.wait_for(node.wait(), 20) == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()

    # Node renders exactly what the Python client renders: Meilisearch's task object.
    async with AsyncTaskHubClient(service.grpc_target) as client:
        final = (await client.get_task(0)).to_dict()
    assert final == {
        "uid": 0,
        "indexUid": "movies",
        "status": "succeeded",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 3, "indexedDocuments": 3},
        "error": None,
        "duration": "PT0.001S",
        "enqueuedAt": "2023-11-14T22:13:20.001000Z",
        "startedAt": "2023-11-14T22:13:20.002000Z",
        "finishedAt": "2023-11-14T22:13:20.003000Z",
        "batchUid": 0,
        "worker": "tests",
    }
    assert [s["task"]["status"] for s in states] == ["enqueued", "processing", "succeeded"]
    assert states[-1]["task"] == final
    assert list(states[-1]["task"]) == list(final)
    assert listing == {"event": "list", "page": {"results": [final], "total": 1, "limit": 10, "from": 0, "next": None}}
    assert error == {
        "event": "error",
        "grpcCode": "NOT_FOUND",
        "reason": "task_not_found",
        "message": "Task `4294967295` not found.",
    }


async def test_node_produces_a_registered_type_by_name(config, clock, node_modules):
    import dataclasses

    from taskhub.server import app

    running = await app.start(dataclasses.replace(config, task_types="sendEmail"), background=False, clock=clock)
    try:
        node = await asyncio.create_subprocess_exec(
            "node",
            str(EXAMPLE / "taskhub-example.js"),
            "--target",
            running.grpc_target,
            "--type",
            "sendEmail",
            "--details",
            '{"to": "ada@example.com", "subject": "Hi"}',
            "--custom-metadata",
            "from node",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(node.stdout.readline(), 20)
            assert line, (await node.stderr.read()).decode()
            enqueued = json.loads(line)
            assert enqueued["task"] == {
                "taskUid": 0,
                "indexUid": None,
                "status": "enqueued",
                "type": "sendEmail",
                "enqueuedAt": "2023-11-14T22:13:20.001000Z",
            }
            await helpers.start(running, 0)
            await helpers.finish(running, 0, details={"messageId": "m-1"})
            events = [json.loads(line) for line in (await asyncio.wait_for(node.stdout.read(), 20)).splitlines()]
            assert await asyncio.wait_for(node.wait(), 20) == 0
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
    finally:
        await running.stop(0)
    final = events[-3]["task"]
    assert (final["status"], final["type"], final["customMetadata"]) == ("succeeded", "sendEmail", "from node")
    assert list(final["details"].items()) == [("to", "ada@example.com"), ("subject", "Hi"), ("messageId", "m-1")]
    assert list(final)[-2:] == ["customMetadata", "worker"]
    assert events[-2]["page"]["results"] == [final]
