"""A task type of your own end to end, every part a real process: `taskhub serve --task-types`,
`taskhub tasks enqueue` from the shell, and `taskhub worker examples/send_email.py` handling it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli import environment
from test_serve import free_port, wait_serving

pytestmark = pytest.mark.slow  # runs a server, a worker and CLI subprocesses

HANDLERS = str(Path(__file__).resolve().parent.parent / "examples" / "send_email.py")


def taskhub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taskhub.server.cli", *args], env=env, capture_output=True, text=True, timeout=30
    )


@pytest.fixture
def target(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(tmp_path / "t.db"),
            "--no-http",
            "--grpc-listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
        ],
        env=environment(TASKHUB_TASK_TYPES="sendEmail,resizeImage"),
    )
    channel = wait_serving(f"127.0.0.1:{port}")
    yield f"127.0.0.1:{port}"
    channel.close()
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=20)


def test_a_custom_type_enqueued_from_the_cli_is_run_by_a_python_worker(target):
    env = environment(TASKHUB_TARGET=target)
    sent = taskhub(
        "tasks",
        "enqueue",
        "sendEmail",
        "--details",
        '{"to": "ada@example.com", "subject": "Hi", "id": 9007199254740993}',
        "--custom-metadata",
        "signup-42",
        "--json",
        env=env,
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["type"] == "sendEmail"
    bad = taskhub("tasks", "enqueue", "sendEmail", "--index-uid", "ada", "--details", '{"to": "nobody"}', env=env)
    assert bad.returncode == 0, bad.stderr
    unknown = taskhub("tasks", "enqueue", "sendSms", env=env)
    assert unknown.returncode != 0 and "`sendSms` is not a valid task type" in unknown.stderr
    assert "`sendEmail`, `resizeImage`." in unknown.stderr

    worker = subprocess.Popen(
        [sys.executable, "-m", "taskhub.server.cli", "worker", HANDLERS, "--poll-seconds", "0.5"], env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            listed = taskhub(
                "tasks", "list", "--types", "sendEmail", "--statuses", "succeeded,failed", "--json", env=env
            )
            assert listed.returncode == 0, listed.stderr
            page = json.loads(listed.stdout)
            if page["total"] == 2:
                break
            assert time.monotonic() < deadline, "the worker did not run both tasks"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    failed, succeeded = page["results"]
    assert succeeded["status"] == "succeeded"
    # The producer's object, key order and the integer past 2**53 kept, the handler's keys merged after.
    assert list(succeeded["details"].items()) == [
        ("to", "ada@example.com"),
        ("subject", "Hi"),
        ("id", 9007199254740993),
        ("status", "sent"),
        ("messageId", "msg-0"),
    ]
    assert succeeded["customMetadata"] == "signup-42"
    assert (failed["status"], failed["indexUid"], failed["error"]["code"]) == ("failed", "ada", "invalid_recipient")
    assert "customMetadata" not in failed
