"""What a newcomer expects of `taskhub`: --version, completion, flags anywhere, 80 columns, errors in flag names.

Also the one date parser the CLI and the gateway share (`taskhub.dates`), driven through
both edges, and the start log of `taskhub serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import subprocess
import sys

import pytest

from test_cli import CLI, environment
from test_client import free_port


async def taskhub(*args: str, **env: str) -> tuple[int, str, str]:
    """`taskhub ARGS` from the root, as a subprocess."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskhub.server.cli",
        *args,
        env=environment(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 20)
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def cli(service) -> CLI:
    return CLI(service.grpc_target)


async def test_version_prints_the_package_version():
    assert await taskhub("--version") == (0, f"taskhub {importlib.metadata.version('taskhub')}\n", "")


async def test_global_flags_go_before_or_after_the_subcommand(cli):
    await cli("enqueue", "indexCreation", "--index-uid", "movies")
    before = await cli("--json", "list")
    after = await cli("list", "--json")
    assert before == after and json.loads(after[1])["total"] == 1
    # Given at both places, the one nearer the command wins; the environment is the fallback.
    nowhere = f"127.0.0.1:{free_port()}"
    code, _, err = await cli("--target", cli.env["TASKHUB_TARGET"], "get", "0", "--target", nowhere)
    assert code == 4 and nowhere in err
    code, out, _ = await cli("--target", nowhere, "get", "0", "--target", cli.env["TASKHUB_TARGET"])
    assert (code, out.splitlines()[0]) == (0, "uid         0")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
async def test_completion_scripts_and_what_they_complete(shell):
    code, script, err = await taskhub("completion", shell)
    assert (code, err) == (0, "") and "_TASKHUB_COMPLETE" in script
    # What the script asks the program for when the user presses Tab after `taskhub ` and `taskhub tasks `.
    for words, expected in (
        ("taskhub ", {"tasks", "keys", "worker", "version", "serve", "gateway", "completion"}),
        ("taskhub tasks ", {"list", "get", "enqueue", "cancel", "delete", "watch", "wait"}),
    ):
        # bash and zsh take the index of the word being completed, fish the word itself.
        cword = "" if shell == "fish" else str(len(words.split()))
        code, out, _ = await taskhub(_TASKHUB_COMPLETE=f"{shell}_complete", COMP_WORDS=words, COMP_CWORD=cword)
        assert code == 0 and expected <= set(out.replace(",", "\n").split()), (shell, words, out)


def fits(text: str, columns: int) -> bool:
    return all(len(line) <= columns for line in text.splitlines())


async def test_list_fits_80_columns_and_wide_shows_everything(cli):
    index = "an_index_with_a_rather_long_name_for_a_terminal"
    code, _, err = await cli(
        "enqueue", "documentAdditionOrUpdate", "--index-uid", index, "--details", '{"receivedDocuments": 3}'
    )
    assert code == 0, err
    await cli("enqueue", "indexCreation", "--index-uid", "movies")
    cli.env["COLUMNS"] = "80"
    code, out, _ = await cli("list")
    assert code == 0 and fits(out, 80), out
    assert "…" in out and index not in out and "movies" in out
    code, out, _ = await cli("list", "--wide")
    assert code == 0 and index in out and "2023-11-14T22:13:20.001000Z" in out and not fits(out, 80)
    cli.env["TASKHUB_WIDE"] = "1"
    assert (await cli("list")) == (code, out, "")
    del cli.env["TASKHUB_WIDE"]
    cli.env["COLUMNS"] = "120"  # a wider terminal: nothing is cut
    code, out, _ = await cli("list")
    assert code == 0 and index in out and fits(out, 120)


async def test_errors_name_the_flags(cli):
    code, _, err = await cli("list", "--after-enqueued-at", "doggo")
    assert code == 2 and "--after-enqueued-at" in err and "afterEnqueuedAt" not in err, err
    code, _, err = await cli("list", "--statuses", "enqueued,doggo")
    assert code == 2 and "--statuses" in err and "parameter" not in err, err
    assert "`doggo` is not a valid task status" in err
    # --json keeps Meilisearch's error object for scripts.
    code, _, err = await cli("list", "--statuses", "doggo", "--json")
    assert json.loads(err)["message"].startswith("Invalid value in parameter `statuses`")


async def test_auth_errors_name_the_api_key_flag(secured_service):
    cli = CLI(secured_service.grpc_target)
    code, _, err = await cli("list")
    assert code == 4 and "--api-key" in err and "TASKHUB_API_KEY" in err and "Authorization header" not in err, err
    assert err.endswith("(missing_authorization_header)\n")
    code, _, err = await cli("list", "--api-key", "not-a-key")
    assert code == 4 and "--api-key" in err and "TASKHUB_API_KEY" in err and err.endswith("(invalid_api_key)\n")


async def test_keys_without_a_master_key_say_how_to_set_one(service):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskhub.server.cli",
        "keys",
        "list",
        env=environment(TASKHUB_TARGET=service.grpc_target),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 4 and err.decode() == (
        "taskhub: The server runs without a master key, and API keys need one: start it with --master-key"
        " (or TASKHUB_MASTER_KEY). (missing_master_key)\n"
    )


SPACED = "2024-01-01 10:00:00Z"


async def test_a_space_separated_date_works_over_http(http, service):
    assert (await http.post("/tasks", json={"type": "indexCreation", "indexUid": "movies"})).status_code == 202
    response = await http.get("/tasks", params={"afterEnqueuedAt": SPACED})
    assert (response.status_code, response.json()["total"]) == (200, 0)
    response = await http.get("/tasks", params={"beforeEnqueuedAt": "2023-11-14 22:13:20.0010001Z"})
    assert (response.status_code, response.json()["total"]) == (200, 1)  # the fraction is kept to the nanosecond


async def test_a_space_separated_date_works_in_the_cli(cli):
    await cli("enqueue", "indexCreation", "--index-uid", "movies")
    assert (await cli.json("list", "--after-enqueued-at", SPACED))["total"] == 0
    assert (await cli.json("list", "--before-enqueued-at", SPACED))["total"] == 1
    assert (await cli.json("list", "--before-enqueued-at", "2023-11-14 22:13:20.001Z"))["total"] == 0
    assert (await cli.json("list", "--before-enqueued-at", "2023-11-14 22:13:20.0010001Z"))["total"] == 1


@pytest.mark.parametrize(
    "value",
    [
        "doggo",
        "2024-13-01",
        "2024-02-30",
        "0000-01-01",
        "2024-01-01T10:00:00",
        "2024-01-01 10:00:00",
        "2024-01-01T24:00:00Z",
        "2024-01-01T10:60:00Z",
        "2024-01-01T10:00:60Z",
        "2024-01-01T10:00Z",
        "2024-01-01T10:00:00+24:00",
        "2024-01-01T10:00:00+01:60",
        "2024-01-01T10:00:00.Z",
        "2024-1-01",
        "\u0662\u0660\u0662\u0664-01-01",
        "2024-01-01T10:00:00+0100",
        " 2024-01-01",
        "2024-01-01_10:00:00Z",
    ],
)
async def test_invalid_dates_keep_the_gateways_error_bodies(http, value):
    response = await http.get("/tasks", params={"afterEnqueuedAt": value})
    assert (response.status_code, response.json()) == (
        400,
        {
            "message": f"Invalid value in parameter `afterEnqueuedAt`: `{value}` is an invalid date-time."
            " It should follow the YYYY-MM-DD or RFC 3339 date-time format.",
            "code": "invalid_task_after_enqueued_at",
            "type": "invalid_request",
            "link": "https://docs.meilisearch.com/errors#invalid_task_after_enqueued_at",
        },
    )


@contextlib.asynccontextmanager
async def serving(db, grpc: str, http: str):
    """`taskhub serve` until it has logged the task count: answers the lines logged so far."""
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskhub.server.cli",
        "serve",
        "--db",
        str(db),
        "--grpc-listen",
        grpc,
        "--http-listen",
        http,
        "--snapshots-dir",
        str(db.parent / "snapshots"),
        "--dumps-dir",
        str(db.parent / "d"),
        env=environment(),
        stderr=asyncio.subprocess.PIPE,
    )
    lines = []
    try:
        while not lines or (" tasks" not in lines[-1] and " task\n" not in lines[-1]):
            line = (await asyncio.wait_for(server.stderr.readline(), 20)).decode()
            assert line, lines
            lines.append(line.split(": ", 1)[-1])  # without the time, level and logger
        yield lines
    finally:
        server.terminate()
        await asyncio.wait_for(server.communicate(), 20)


async def test_the_start_log_names_the_addresses_the_dashboard_and_the_task_count(tmp_path):
    db, grpc, port = tmp_path / "taskhub.db", f"127.0.0.1:{free_port()}", free_port()
    async with serving(db, grpc, f"127.0.0.1:{port}") as lines:
        assert lines[-3:] == [
            f"gRPC listening on {grpc}\n",
            f"HTTP listening on 127.0.0.1:{port}, dashboard at http://127.0.0.1:{port}/dashboard\n",
            f"database {db}: 0 tasks\n",
        ]
        for _ in range(2):
            assert (await CLI(grpc)("enqueue", "dumpCreation"))[0] == 0
    async with serving(db, grpc, f"127.0.0.1:{port}") as lines:
        assert lines[-1] == f"database {db}: 2 tasks\n"


def test_a_database_password_is_masked_in_the_log():
    from taskhub.server.app import shown_db

    assert (
        shown_db("postgresql://taskhub:s3cr:t@db.example:5432/queue")
        == "postgresql://taskhub:***@db.example:5432/queue"
    )
    assert shown_db("postgres://taskhub@db/queue") == "postgres://taskhub@db/queue"
    assert shown_db("./data/taskhub.db") == "./data/taskhub.db"


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("1970-01-01", False, (0, 0)),
        ("1970-01-01", True, (86_400, 0)),
        ("9999-12-31", True, (253_402_300_800, 0)),
        ("2024-01-01 10:00:00Z", False, (1_704_103_200, 0)),
        ("2024-01-01t10:00:00z", True, (1_704_103_200, 0)),
        ("2024-01-01T11:30:00+01:30", False, (1_704_103_200, 0)),
        ("2024-01-01T08:00:00-02:00", False, (1_704_103_200, 0)),
        ("2024-01-01T10:00:00.5Z", False, (1_704_103_200, 500_000_000)),
        ("2024-01-01T10:00:00.1234567899Z", False, (1_704_103_200, 123_456_789)),  # cut, never rounded
        ("0001-01-01T00:00:00Z", False, (-62_135_596_800, 0)),
    ],
)
def test_the_shared_parser_reads_dates_as_spec_says(text, after, expected):
    from taskhub.dates import parse_bound

    assert parse_bound(text, after=after) == expected


def test_the_client_commands_never_import_the_server():
    """A client-only distribution ships `taskhub.client.cli`: its root must build without the server."""
    code = (
        "import sys, taskhub.client.cli as cli\n"
        "assert cli.main(['tasks', '--help']) == 0 and cli.main(['keys', 'list', '--help']) == 0\n"
        "assert cli.main(['worker', '--help']) == 0 and cli.main(['--version']) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('taskhub.server', 'taskhub.gateway'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=environment(), capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.splitlines()[-1]) == (0, "[]"), result.stderr


@pytest.mark.parametrize("command", ["serve", "gateway"])
async def test_an_unknown_log_level_is_a_one_line_error(command, tmp_path):
    code, out, err = (
        await taskhub(
            command,
            "--log-level",
            "chatty",
            "--db",
            str(tmp_path / "q.db"),
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        )
        if command == "serve"
        else await taskhub(command, "--log-level", "chatty", "--http-listen", "127.0.0.1:0")
    )
    assert code != 0
    assert "Traceback" not in err
    assert "--log-level" in err and "chatty" in err
