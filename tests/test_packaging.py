"""What a user installs and what running the tests installs.

Every npm folder's lockfile is complete and committed, so `npm ci` (what scripts/test.sh runs)
installs it as locked and running the tests rewrites no tracked file. The `taskhub-client` wheel
built from client/ installs the client alone in a fresh venv. The example systemd unit is valid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NPM_FOLDERS = ["tools", "tests/node", "tests/browser", "tests/ts", "examples/node"]

npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")


def test_every_npm_folder_is_listed():
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [s for s in subfolders if s not in ("node_modules", ".git", ".venv")]
        if "package.json" in files and folder != str(ROOT):
            found.add(str(pathlib.Path(folder).relative_to(ROOT)))
    assert found == set(NPM_FOLDERS)


@npm
@pytest.mark.parametrize("folder", NPM_FOLDERS)
def test_lockfile_is_committed_and_complete(folder, tmp_path):
    """npm resolving package.json again writes exactly the committed lockfile."""
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", f"{folder}/package-lock.json"], cwd=ROOT, capture_output=True, text=True
    )
    assert tracked.returncode == 0, tracked.stderr
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / folder / name, tmp_path / name)
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=tmp_path,
        check=True,
        timeout=300,
        capture_output=True,
    )
    assert json.loads((tmp_path / "package-lock.json").read_text()) == json.loads(
        (ROOT / folder / "package-lock.json").read_text()
    )


# -- taskhub-client: the client alone, from client/pyproject.toml -------------------------------------

SERVER_ONLY = {
    "numpy",
    "pyroaring",
    "sqlite-utils",
    "psycopg",
    "starlette",
    "uvicorn",
    "uvloop",
    "grpcio-health-checking",
    "grpcio-reflection",
    "prometheus-client",
}
CLIENT_BUDGET = 25 * 2**20  # what installing the client may add to an empty venv


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in requirements}


def _project(path: pathlib.Path) -> dict:
    return tomllib.loads(path.read_text())["project"]


def _size(folder: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_client_needs_nothing_of_the_server():
    """The whole distribution lists the client's requirements as they are, then the server's own."""
    client, whole = _project(ROOT / "client" / "pyproject.toml"), _project(ROOT / "pyproject.toml")
    assert client["version"] == whole["version"]
    assert set(client["dependencies"]) <= set(whole["dependencies"])
    assert _names(client["dependencies"]) == {
        "grpcio",
        "protobuf",
        "grpcio-status",
        "googleapis-common-protos",
        "click",
    }
    assert _names(whole["dependencies"]) - _names(client["dependencies"]) == SERVER_ONLY


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> tuple[pathlib.Path, int]:
    """A fresh venv (no pip in it) with the built taskhub-client wheel installed; and the bytes it added."""
    work = tmp_path_factory.mktemp("client")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", work / "wheel", ROOT / "client"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = (work / "wheel").glob("taskhub_client-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", work / "venv"], check=True, timeout=120)
    python = work / "venv" / "bin" / "python"
    empty = _size(work / "venv")
    subprocess.run([*pip, "--python", python, "install", "-q", wheel], check=True, timeout=600, capture_output=True)
    return work / "venv", _size(work / "venv") - empty


@pytest.mark.slow
def test_client_wheel_installs_the_client_alone(client_venv):
    venv, added = client_venv
    python = venv / "bin" / "python"
    subprocess.run([python, "-c", "import taskhub.client, taskhub.v1.task_service_pb2_grpc"], check=True, timeout=60)
    server = subprocess.run([python, "-c", "import taskhub.server"], capture_output=True, text=True, timeout=60)
    assert server.returncode == 1 and "No module named 'taskhub.server'" in server.stderr
    gateway = subprocess.run([python, "-c", "import taskhub.gateway"], capture_output=True, text=True, timeout=60)
    assert gateway.returncode == 1
    listed = subprocess.run(
        [
            python,
            "-c",
            "import importlib.metadata as m; print(*(d.metadata['Name'].lower() for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert not set(listed.stdout.split()) & SERVER_ONLY
    for command in ("tasks", "keys", "worker"):
        shown = subprocess.run(
            [venv / "bin" / "taskhub", command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"Usage: taskhub {command}")
    served = subprocess.run([venv / "bin" / "taskhub", "serve"], capture_output=True, text=True, timeout=60)
    assert served.returncode == 2 and "No such command 'serve'" in served.stderr
    print(f"taskhub-client added {added / 2**20:.1f} MiB to an empty venv")
    assert added <= CLIENT_BUDGET, f"{added / 2**20:.1f} MiB"


@pytest.mark.slow
async def test_client_command_drives_a_real_server(client_venv, service):
    venv, _ = client_venv
    process = await asyncio.create_subprocess_exec(
        venv / "bin" / "taskhub",
        "tasks",
        "enqueue",
        "indexCreation",
        "--index-uid",
        "books",
        "--json",
        "--target",
        service.grpc_target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == {
        "taskUid": 0,
        "indexUid": "books",
        "status": "enqueued",
        "type": "indexCreation",
        "enqueuedAt": "2023-11-14T22:13:20.001000Z",
    }


# -- the example systemd unit -----------------------------------------------------------------------------


def test_systemd_unit_sets_only_real_settings():
    """Every TASKHUB_* the example unit sets is a `taskhub serve` setting, and it runs `taskhub serve`."""
    from taskhub.server.config import Config, env_name

    unit = (ROOT / "examples" / "systemd" / "taskhub.service").read_text()
    settings = {env_name(f.name) for f in dataclasses.fields(Config)}
    assigned = re.findall(r"^Environment=(TASKHUB_\w+)=", unit, re.MULTILINE)
    assert assigned and set(assigned) <= settings
    assert re.search(r"^ExecStart=\S+/taskhub serve$", unit, re.MULTILINE)
    assert "[Install]" in unit and "StateDirectory=taskhub" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    """`systemd-analyze verify` accepts the unit, pointed at this venv's taskhub and the current user."""
    import grp
    import pwd

    unit = (ROOT / "examples" / "systemd" / "taskhub.service").read_text()
    unit = re.sub(
        r"^ExecStart=\S+/taskhub", f"ExecStart={pathlib.Path(sys.executable).parent}/taskhub", unit, flags=re.MULTILINE
    )
    unit = re.sub(r"^User=taskhub$", f"User={pwd.getpwuid(os.getuid()).pw_name}", unit, flags=re.MULTILINE)
    unit = re.sub(r"^Group=taskhub$", f"Group={grp.getgrgid(os.getgid()).gr_name}", unit, flags=re.MULTILINE)
    (tmp_path / "taskhub.service").write_text(unit)
    verified = subprocess.run(
        ["systemd-analyze", "verify", tmp_path / "taskhub.service"], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stderr
