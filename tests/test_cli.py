"""`taskhub tasks ...` as a real subprocess against a real server: output, JSON shapes and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import helpers
from taskhub.v1 import task_service_pb2_grpc
from test_client import RecordingTaskService, free_port

LINK = "https://docs.meilisearch.com/errors#"


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "taskhub.server.cli", "tasks", *args]


def environment(**extra: str) -> dict[str, str]:
    # Without COLUMNS, tables fit 80 columns: the CLI's output is a pipe here.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_") and k != "COLUMNS"}
    return env | extra


class CLI:
    """Runs `taskhub tasks ...` against one server, found through TASKHUB_TARGET."""

    def __init__(self, target: str) -> None:
        self.env = environment(TASKHUB_TARGET=target)

    async def start(self, *args: str, stdout=asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *command(*args), env=self.env, stdout=stdout, stderr=asyncio.subprocess.PIPE
        )

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        process = await self.start(*args)
        out, err = await asyncio.wait_for(process.communicate(), 20)
        return process.returncode, out.decode(), err.decode()

    async def json(self, *args: str):
        code, out, err = await self(*args, "--json")
        assert (code, err) == (0, ""), err
        return json.loads(out)


@pytest.fixture
def cli(service) -> CLI:
    return CLI(service.grpc_target)


async def line(process: asyncio.subprocess.Process) -> str:
    return (await asyncio.wait_for(process.stdout.readline(), 10)).decode()


async def test_enqueue_get_and_list_print_meilisearch_json(cli):
    summary = await cli.json(
        "enqueue", "documentAdditionOrUpdate", "--index-uid", "movies", "--details", '{"receivedDocuments": 3}'
    )
    assert summary == {
        "taskUid": 0,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "enqueuedAt": "2023-11-14T22:13:20.001000Z",
    }
    task = {
        "uid": 0,
        "indexUid": "movies",
        "status": "enqueued",
        "type": "documentAdditionOrUpdate",
        "canceledBy": None,
        "details": {"receivedDocuments": 3, "indexedDocuments": None},
        "error": None,
        "duration": None,
        "enqueuedAt": "2023-11-14T22:13:20.001000Z",
        "startedAt": None,
        "finishedAt": None,
    }
    assert await cli.json("get", "0") == task
    assert await cli.json("list") == {"results": [task], "total": 1, "limit": 20, "from": 0, "next": None}
    code, out, _ = await cli("get", "0", "--json")
    assert list(json.loads(out)) == list(task)  # Meilisearch's field order


async def test_enqueue_file_sends_every_line_in_batches_and_names_a_bad_line(cli, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    lines = [
        json.dumps({"type": "documentAdditionOrUpdate", "indexUid": f"i{n % 3}", "details": {"receivedDocuments": n}})
        for n in range(1002)
    ]
    tasks.write_text("\n".join([lines[0], "", *lines[1:], '{"type": "dumpCreation"}']) + "\n")
    code, out, err = await cli("enqueue", "--file", str(tasks), "--json")
    assert (code, err) == (0, "")
    summaries = [json.loads(line) for line in out.splitlines()]
    assert [s["taskUid"] for s in summaries] == list(range(1003))  # 1,000 in the first call, 3 in the second
    assert (summaries[1001]["indexUid"], summaries[1002]["type"]) == ("i2", "dumpCreation")
    assert (await cli.json("get", "5"))["details"] == {"receivedDocuments": 5, "indexedDocuments": None}

    # Line 1,006 has an index uid the server refuses: the first call went in, the second did not.
    bad = [*lines, *lines[:3], json.dumps({"type": "indexCreation", "indexUid": "no good"}), *lines[:3]]
    tasks.write_text("\n".join(bad) + "\n")
    code, out, err = await cli("enqueue", "--file", str(tasks))
    assert code == 2 and len(out.splitlines()) == 1000
    assert err.startswith(f"taskhub: {tasks}:1006: `no good` is not a valid index uid.")
    assert err.rstrip().endswith(
        "Nothing from line 1001 on was enqueued; the 1,000 tasks before it were. (invalid_index_uid)"
    )
    assert (await cli.json("list", "--limit", "1"))["total"] == 2003

    # The client's own checks and the file's shape name the line too; nothing is sent.
    tasks.write_text(lines[0] + '\n{"type": "flyToTheMoon", "indexUid": "a"}\n')
    code, _, err = await cli("enqueue", "--file", str(tasks))
    assert code == 2 and err.startswith(f"taskhub: {tasks}:2: ") and "(invalid_task_types)" in err
    for shape in (
        "[1, 2]",
        '{"type": 5}',
        '{"type": "indexCreation", "indexUid": 5}',
        '{"type": "indexCreation", "indexUid": "a", "details": "x"}',
        '{"type": "x", "uid": 1}',
    ):
        tasks.write_text(lines[0] + "\n" + shape + "\n")
        code, _, err = await cli("enqueue", "--file", str(tasks))
        assert code == 2 and err.startswith(f"taskhub: {tasks}:2: each line is a JSON object"), (shape, err)
    tasks.write_bytes(lines[0].encode() + b"\n\xff\xfe\n")
    code, _, err = await cli("enqueue", "--file", str(tasks))
    assert (code, err.strip()) == (2, f"taskhub: {tasks}:2: not UTF-8 text. (bad_request)")
    assert (await cli.json("list", "--limit", "1"))["total"] == 2003

    for args in (
        (),
        ("indexCreation", "--file", str(tasks)),
        ("--file", str(tasks), "--index-uid", "a"),
        ("--file", str(tmp_path / "missing.jsonl")),
    ):
        code, _, err = await cli("enqueue", *args)
        assert code == 2 and "Usage:" in err, (args, err)


async def test_enqueue_file_says_a_lost_answer_may_have_gone_in(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"type": "indexCreation", "indexUid": "a"}\n')
    nobody = CLI(f"127.0.0.1:{free_port()}")
    code, _, err = await nobody("enqueue", "--file", str(tasks), "--rpc-timeout", "1")
    assert code == 4 and f"{tasks}:1-1: " in err
    assert "These lines may or may not have been enqueued (`taskhub tasks list` tells); the 0 tasks before" in err


async def test_enqueue_file_reads_stdin(cli):
    process = await asyncio.create_subprocess_exec(
        *command("enqueue", "--file", "-"),
        env=cli.env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(b'{"type": "indexCreation", "indexUid": "books"}\n'), 20)
    assert (process.returncode, err) == (0, b"")
    assert out.decode().startswith("enqueued task 0")


async def test_human_output_is_a_table_a_card_and_summary_lines(cli, service):
    code, out, err = await cli("enqueue", "indexCreation", "--index-uid", "movies")
    assert (code, out, err) == (0, "enqueued task 0 (indexCreation on movies)\n", "")
    assert (await cli("enqueue", "dumpCreation"))[1] == "enqueued task 1 (dumpCreation)\n"
    await service.scheduler.tick()  # runs the dump: started and finished at readings 3 and 4
    code, out, _ = await cli("list")
    assert out == (
        "UID  INDEX   TYPE           STATUS     ENQUEUED (UTC)       DURATION\n"
        "  1  -       dumpCreation   succeeded  2023-11-14 22:13:20  0.001s\n"
        "  0  movies  indexCreation  enqueued   2023-11-14 22:13:20  -\n"
        "2 of 2 tasks\n"
    )
    code, out, _ = await cli("list", "--wide")
    assert out == (
        "UID  INDEX   TYPE           STATUS     ENQUEUED AT                  DURATION\n"
        "  1  -       dumpCreation   succeeded  2023-11-14T22:13:20.002000Z  0.001s\n"
        "  0  movies  indexCreation  enqueued   2023-11-14T22:13:20.001000Z  -\n"
        "2 of 2 tasks\n"
    )
    code, out, _ = await cli("list", "--limit", "1", "--reverse")
    assert out.splitlines()[-1] == "1 of 2 tasks; next page: --from 1"
    code, out, _ = await cli("get", "0")
    assert out == (
        "uid         0\n"
        "indexUid    movies\n"
        "status      enqueued\n"
        "type        indexCreation\n"
        "canceledBy  -\n"
        'details     {"primaryKey":null}\n'
        "error       -\n"
        "duration    -\n"
        "enqueuedAt  2023-11-14T22:13:20.001000Z\n"
        "startedAt   -\n"
        "finishedAt  -\n"
    )
    assert (await cli("list", "--uids", ""))[1] == "0 of 0 tasks\n"


async def test_filter_flags_and_paging(cli):
    for index in ("movies", "books", "movies", "movies"):
        await cli("enqueue", "indexCreation", "--index-uid", index)
    uids = lambda page: [t["uid"] for t in page["results"]]  # noqa: E731
    assert uids(await cli.json("list", "--index-uids", "movies", "--uids", "0,1,2")) == [2, 0]
    assert uids(await cli.json("list", "--statuses", "ENQUEUED,failed", "--types", "indexCreation")) == [3, 2, 1, 0]
    assert uids(await cli.json("list", "--before-enqueued-at", "2023-11-14T22:13:20.003Z")) == [1, 0]
    assert uids(await cli.json("list", "--after-enqueued-at", "2023-11-14")) == []
    assert uids(await cli.json("list", "--index-uids", "*", "--from", "2")) == [2, 1, 0]
    code, out, _ = await cli("list", "--all", "--limit", "1", "--reverse", "--json", "--index-uids", "movies")
    assert [json.loads(row)["uid"] for row in out.splitlines()] == [0, 2, 3]


async def test_cancel_and_delete_print_the_enqueued_task(cli, service):
    await cli("enqueue", "indexCreation", "--index-uid", "movies")
    summary = await cli.json("cancel", "--uids", "0")
    assert summary == {
        "taskUid": 1,
        "indexUid": None,
        "status": "enqueued",
        "type": "taskCancelation",
        "enqueuedAt": "2023-11-14T22:13:20.002000Z",
    }
    await service.scheduler.tick()
    assert (await cli.json("get", "0"))["canceledBy"] == 1
    code, out, _ = await cli("delete", "--statuses", "canceled")
    assert (code, out) == (0, "enqueued task 2 (taskDeletion)\n")
    await service.scheduler.tick()
    assert (await cli.json("get", "2"))["details"] == {
        "matchedTasks": 1,
        "deletedTasks": 1,
        "originalFilter": "?statuses=canceled",
    }


async def test_errors_have_documented_exit_codes(cli):
    assert await cli("get", "9") == (3, "", "taskhub: Task `9` not found. (task_not_found)\n")
    code, out, err = await cli("get", "9", "--json")
    assert (code, out, json.loads(err)) == (
        3,
        "",
        {
            "message": "Task `9` not found.",
            "code": "task_not_found",
            "type": "invalid_request",
            "link": LINK + "task_not_found",
        },
    )
    code, _, err = await cli("list", "--statuses", "doggo")
    assert (code, err) == (
        2,
        "taskhub: Invalid value in --statuses: `doggo` is not a valid task status."
        " Available statuses are `enqueued`, `processing`, `succeeded`, `failed`, `canceled`."
        " (invalid_task_statuses)\n",
    )
    code, _, err = await cli("cancel")
    assert code == 2 and err.endswith("(missing_task_filters)\n")
    code, _, err = await cli("enqueue", "indexCreation", "--index-uid", "the good doggo")
    assert code == 2 and err.endswith("(invalid_index_uid)\n")  # refused by the server
    code, _, err = await cli("enqueue", "indexCreation", "--details", "{nope")
    assert code == 2 and "Invalid value for '--details': not valid JSON" in err
    code, _, err = await cli("get", "x")
    assert code == 2 and "`x` is not a task uid" in err
    code, _, err = await cli("get", "-1")
    assert code == 2 and "No such option '-1'" in err
    code, _, err = await cli()
    assert code == 2 and "Commands:" in err and "Usage: taskhub tasks [OPTIONS] COMMAND" in err

    port = free_port()
    code, _, err = await cli("get", "0", "--target", f"127.0.0.1:{port}", "--json")
    body = json.loads(err)
    assert (code, body["code"], body["type"]) == (4, "unavailable", "system")
    assert body["message"].startswith(
        f"Cannot reach a taskhub server at 127.0.0.1:{port} (--target or TASKHUB_TARGET):"
    )


async def test_wait_prints_one_line_per_change_and_exits_with_the_outcome(cli, service):
    for _ in range(3):
        await cli("enqueue", "indexCreation", "--index-uid", "movies")
    waiting = await cli.start("wait", "0")
    assert await line(waiting) == "task 0 (indexCreation on movies): enqueued\n"
    await helpers.start(service, 0)
    assert await line(waiting) == "task 0 (indexCreation on movies): processing\n"
    await helpers.finish(service, 0)
    assert await line(waiting) == "task 0 (indexCreation on movies): succeeded in 0.001s\n"
    assert await asyncio.wait_for(waiting.wait(), 10) == 0

    waiting = await cli.start("wait", "1", "--json")
    await helpers.start(service, 1)
    error = {"message": "boom", "code": "internal", "type": "internal", "link": LINK + "internal"}
    await helpers.finish(service, 1, error=error)
    out, err = await asyncio.wait_for(waiting.communicate(), 10)
    assert (waiting.returncode, err) == (1, b"")
    task = json.loads(out)
    assert (task["uid"], task["status"], task["error"], task["duration"]) == (1, "failed", error, "PT0.001S")

    await cli("cancel", "--uids", "2")
    await service.scheduler.tick()
    assert await cli("wait", "2") == (1, "task 2 (indexCreation on movies): canceled by task 3\n", "")
    assert await cli("wait", "3", "--timeout", "5") == (0, "task 3 (taskCancelation): succeeded in 0.000s\n", "")


async def test_wait_times_out_with_exit_5(cli):
    await cli("enqueue", "indexCreation", "--index-uid", "movies")
    assert await cli("wait", "0", "--timeout", "0.3") == (
        5,
        "task 0 (indexCreation on movies): enqueued\n",
        "taskhub: Task `0` did not reach a terminal status within 0.3 seconds. (timeout)\n",
    )
    assert (await cli("watch", "7"))[0] == 3


async def test_watch_json_prints_every_state(cli, service):
    await cli("enqueue", "indexCreation", "--index-uid", "movies")
    watching = await cli.start("watch", "0", "--json")
    assert json.loads(await line(watching))["status"] == "enqueued"
    await helpers.start(service, 0)
    assert json.loads(await line(watching))["startedAt"] == "2023-11-14T22:13:20.002000Z"
    await helpers.finish(service, 0)
    last = json.loads(await line(watching))
    assert (last["status"], last["finishedAt"], last["duration"]) == (
        "succeeded",
        "2023-11-14T22:13:20.003000Z",
        "PT0.001S",
    )
    assert await asyncio.wait_for(watching.wait(), 10) == 0


async def test_watch_rewrites_one_line_on_a_terminal(cli, service):
    await cli("enqueue", "indexCreation", "--index-uid", "movies")
    main, child = pty.openpty()
    try:
        watching = await cli.start("watch", "0", stdout=child)
        os.close(child)
        first = await asyncio.to_thread(os.read, main, 4096)
        assert first == b"\r\x1b[Ktask 0 (indexCreation on movies): enqueued"
        await helpers.start(service, 0)
        await helpers.finish(service, 0)
        assert await asyncio.wait_for(watching.wait(), 10) == 0
        rest = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            rest += chunk
    finally:
        os.close(main)
    # The terminal turns "\n" into "\r\n".
    assert rest == (
        b"\r\x1b[Ktask 0 (indexCreation on movies): processing"
        b"\r\x1b[Ktask 0 (indexCreation on movies): succeeded in 0.001s\r\n"
    )


async def test_api_key_comes_from_the_environment():
    recorder = RecordingTaskService()
    server = grpc.aio.server()
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        cli = CLI(f"127.0.0.1:{port}")
        cli.env["TASKHUB_API_KEY"] = "from-env"
        assert (await cli.json("get", "4"))["uid"] == 4
        assert (await cli.json("get", "5", "--api-key", "from-flag"))["uid"] == 5
    finally:
        await server.stop(0)
    assert [seen["authorization"] for seen, _ in recorder.seen] == ["Bearer from-env", "Bearer from-flag"]


async def test_against_taskhub_serve(tmp_path):
    """The whole path a user takes: `taskhub serve` in one process, `taskhub tasks` in others."""
    target = f"127.0.0.1:{free_port()}"
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskhub.server.cli",
        "serve",
        "--db",
        str(tmp_path / "taskhub.db"),
        "--grpc-listen",
        target,
        "--no-http",
        "--snapshots-dir",
        str(tmp_path / "snapshots"),
        "--dumps-dir",
        str(tmp_path / "dumps"),
        env=environment(),
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=15)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        cli = CLI(target)
        assert (await cli.json("enqueue", "dumpCreation"))["taskUid"] == 0
        code, out, err = await cli("wait", "0", "--json", "--timeout", "10")
        task = json.loads(out)
        assert (code, err, task["status"], sorted(task["details"])) == (0, "", "succeeded", ["dumpUid"])
        assert os.listdir(tmp_path / "dumps") == [task["details"]["dumpUid"] + ".dump"]
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 10) == 0


async def test_watch_without_a_uid_follows_every_matching_change(cli, service):
    watching = await cli.start("watch", "--index-uids", "movies")
    for _ in range(500):  # the subprocess needs a moment to subscribe
        if service.scheduler.hub.watchers == 1:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the CLI never subscribed")
    await cli("enqueue", "indexCreation", "--index-uid", "movies")  # 1
    await cli("enqueue", "indexCreation", "--index-uid", "books")  # 2
    await helpers.start(service, 0)  # 3
    await helpers.finish(service, 0)  # 4
    await cli("delete", "--uids", "0")  # 5, 6
    await service.scheduler.tick()  # 7: the deletion of task 0
    assert [await line(watching) for _ in range(4)] == [
        "#1 task 0 (indexCreation on movies): enqueued\n",
        "#3 task 0 (indexCreation on movies): processing\n",
        "#4 task 0 (indexCreation on movies): succeeded in 0.001s\n",
        "#7 task 0 (indexCreation on movies): deleted\n",
    ]
    watching.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(watching.wait(), 10) == 130


async def test_watch_json_after_a_sequence_prints_one_change_per_line(cli, service):
    for index in ("movies", "books"):
        await cli("enqueue", "indexCreation", "--index-uid", index)
    await helpers.start(service, 1)
    watching = await cli.start("watch", "--json", "--after", "1", "--types", "indexCreation")
    first, second = json.loads(await line(watching)), json.loads(await line(watching))
    assert first == {
        "sequence": 2,
        "deleted": False,
        # Its state before the lease: not started, in no batch yet, held by no worker.
        "task": {k: v for k, v in (await cli.json("get", "1")).items() if k not in ("batchUid", "worker")}
        | {"status": "enqueued", "startedAt": None},
    }
    assert list(first) == ["sequence", "deleted", "task"]
    assert (second["sequence"], second["task"]) == (3, await cli.json("get", "1"))
    watching.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(watching.wait(), 10) == 130


async def test_watch_flags_are_a_uid_or_filters(cli):
    code, _, err = await cli("watch", "0", "--statuses", "enqueued", "--after", "3")
    assert code == 2 and "watch takes a UID or filters, not both (--statuses, --after with UID 0)" in err
    code, _, err = await cli("watch", "--timeout", "1")
    assert code == 2 and "--timeout needs a UID" in err
    code, _, err = await cli("watch", "--after", "x")
    assert code == 2 and "`x` is not a sequence number" in err
    assert await cli("watch", "--after", "99") == (
        2,
        "",
        "taskhub: Sequence number `99` is ahead of the newest change (`0`). (invalid_watch_cursor)\n",
    )
    code, _, err = await cli("watch", "--statuses", "doggo", "--json")
    assert (code, json.loads(err)["code"]) == (2, "invalid_task_statuses")
