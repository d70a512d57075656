"""The README's quick start and docs/python-client.md's example, run as they are written.

The quick start is the fenced block after `<!-- quickstart` in README.md; it runs in bash in a
temporary folder (HOME there too) holding a link to the repository's .venv and a copy of
examples/, on free ports given through the variables `taskhub serve` and the client commands
read. It must end with its task succeeded and leave no process behind.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # runs the README's blocks in bash subprocesses

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = pathlib.Path(sys.prefix)


def fenced_block(page: pathlib.Path, marker: str, language: str) -> str:
    match = re.search(rf"<!-- {marker}[^>]*-->\n```{language}\n(.*?)```", page.read_text(), re.S)
    assert match, f"no ```{language} block after <!-- {marker} in {page}"
    return match.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_members(sid: int) -> list[int]:
    """Pids of live processes in session `sid` (the shell and all it started)."""
    pids = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture
def folder(tmp_path):
    """A stand-in for the clone: the .venv the tests run in, and examples/."""
    (tmp_path / ".venv").symlink_to(VENV)
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("node", "node_modules"))
    grpc, http = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKHUB_")}
    env.update(
        HOME=str(tmp_path),
        TASKHUB_GRPC_LISTEN=f"127.0.0.1:{grpc}",
        TASKHUB_HTTP_LISTEN=f"127.0.0.1:{http}",
        TASKHUB_TARGET=f"127.0.0.1:{grpc}",
    )
    env.pop("VIRTUAL_ENV", None)
    return tmp_path, env


def run_in_session(script: str, cwd: pathlib.Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(shell.pid, signal.SIGKILL)
        out, err = shell.communicate()
        pytest.fail(f"timed out after {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    left = session_members(shell.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running: {left}\nstderr:\n{err}"
    return subprocess.CompletedProcess(shell.args, shell.returncode, out, err)


def test_the_quick_start_ends_with_its_task_succeeded_and_nothing_running(folder):
    cwd, env = folder
    block = fenced_block(ROOT / "README.md", "quickstart", "sh")
    # `set -e` so that any failing line fails the test; the uid is printed for the check below.
    script = "set -euo pipefail\n" + block + '\necho "quickstart-uid=$uid"\n'
    result = run_in_session(script, cwd, env, timeout=120)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    uid = re.search(r"quickstart-uid=(\d+)", result.stdout).group(1)
    # `taskhub tasks wait` exited 0 (succeeded) and said so.
    assert re.search(rf"task {uid} \(documentAdditionOrUpdate on movies\): succeeded", result.stdout), result.stdout
    assert "stopped cleanly" in result.stderr

    # A second run waits on its own new task, not the first one.
    again = run_in_session(script, cwd, env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert re.search(r"quickstart-uid=(\d+)", again.stdout).group(1) == str(int(uid) + 1)


def test_the_python_client_example_returns_and_deletes_only_its_own_task(folder):
    cwd, env = folder
    example = fenced_block(ROOT / "docs" / "python-client.md", "python-client-example", "python")
    (cwd / "example.py").write_text(example.replace("127.0.0.1:50051", env["TASKHUB_TARGET"]))
    script = """set -euo pipefail
export PATH="$PWD/.venv/bin:$PATH"
taskhub serve & server=$!
until taskhub tasks list --limit 0 > /dev/null 2>&1; do sleep 0.5; done
taskhub tasks enqueue indexCreation --index-uid kept --json > /dev/null
taskhub worker examples/handlers.py & worker=$!
python example.py
taskhub tasks list --index-uids kept --statuses succeeded --json
kill "$worker" && wait "$worker"
kill "$server" && wait "$server"
"""
    result = run_in_session(script, cwd, env, timeout=120)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "task_not_found" in result.stdout  # it deleted the task it enqueued...
    assert '"total":1' in result.stdout.replace(" ", "")  # ...and left the task it did not enqueue
