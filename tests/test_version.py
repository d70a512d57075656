"""`GET /version` in Meilisearch's shape, and the same over gRPC, the Python clients and the CLI.

The package version is the installed `taskhub` distribution's. The commit is known only where
the server runs from a git checkout's tracked files (as this test suite does); an installed wheel
carries none, and then `commitSha` and `commitDate` are `"unknown"`, as Meilisearch answers for a
build without git information.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import pathlib
import subprocess
from datetime import UTC, datetime

import grpc

from conftest import MASTER_KEY, gateway_client
from gateway_bodies import error
from helpers import error_of
from test_cli_conventions import taskhub

VERSION_KEYS = ["commitSha", "commitDate", "pkgVersion"]


def git(folder: pathlib.Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


def expected_version() -> dict:
    """What the server in this test run must answer: its checkout's HEAD, when its code is tracked there."""
    import taskhub.server.app

    folder = pathlib.Path(taskhub.server.app.__file__).parent
    try:
        git(folder, "ls-files", "--error-unmatch", "--", "version.py")
        sha, seconds = git(folder, "show", "-s", "--format=%H %ct", "HEAD").split()
    except (OSError, subprocess.CalledProcessError):
        sha, date = "unknown", "unknown"
    else:
        date = datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    return {"commitSha": sha, "commitDate": date, "pkgVersion": importlib.metadata.version("taskhub")}


async def test_get_version_answers_meilisearchs_shape(http):
    response = await http.get("/version")
    assert response.status_code == 200
    assert list(response.json()) == VERSION_KEYS
    assert response.json() == expected_version()


async def test_get_version_needs_the_version_action(secured_http):
    master = {"Authorization": f"Bearer {MASTER_KEY}"}

    async def key(actions: list[str], indexes: list[str]) -> dict[str, str]:
        body = {"actions": actions, "indexes": indexes, "expiresAt": None}
        made = await secured_http.post("/keys", json=body, headers=master)
        return {"Authorization": f"Bearer {made.json()['key']}"}

    response = await secured_http.get("/version")
    assert response.status_code == 401
    assert response.json() == error(
        "missing_authorization_header",
        "The Authorization header is missing. It must use the bearer authorization method.",
        "auth",
    )
    for headers in (await key(["tasks.*", "dumps.*", "snapshots.*"], ["*"]), {"Authorization": "Bearer doggo"}):
        response = await secured_http.get("/version", headers=headers)
        assert (response.status_code, response.json()) == (
            403,
            error("invalid_api_key", "The provided API key is invalid.", "auth"),
        )
    # As in Meilisearch, the action is enough: a version is no index's, so a scoped key may read it.
    for headers in (master, await key(["version"], ["movies"]), await key(["*"], ["*"])):
        response = await secured_http.get("/version", headers=headers)
        assert (response.status_code, response.json()) == (200, expected_version())


async def test_a_gateway_in_front_of_an_older_server_says_unknown():
    """A server from before GetVersion cannot say which release it is: every field is unknown, not a 500."""
    older = grpc.aio.server()  # serves no taskhub service at all, so GetVersion is UNIMPLEMENTED
    port = older.add_insecure_port("127.0.0.1:0")
    await older.start()
    try:
        async with gateway_client(f"127.0.0.1:{port}") as http:
            response = await http.get("/version")
        assert (response.status_code, response.json()) == (
            200,
            {"commitSha": "unknown", "commitDate": "unknown", "pkgVersion": "unknown"},
        )
    finally:
        await older.stop(0)


# -- where the values come from ---------------------------------------------------


def test_no_commit_is_claimed_outside_a_checkout(tmp_path):
    from taskhub.server.version import build_info

    module = tmp_path / "site-packages" / "taskhub" / "server" / "version.py"
    module.parent.mkdir(parents=True)
    module.write_text("")
    outside = build_info(module)
    assert (outside.commit_sha, outside.commit_time) == (None, None)
    assert outside.package_version == importlib.metadata.version("taskhub")
    # A checkout around an installed package (a virtualenv inside a project) is not the package's own.
    git(tmp_path, "init", "-q")
    (tmp_path / "README").write_text("a project\n")
    git(tmp_path, "add", "README")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    around = build_info(module)
    assert (around.commit_sha, around.commit_time) == (None, None)


def test_a_checkouts_head_and_its_date_are_the_commit(tmp_path):
    from taskhub.server.version import build_info

    module = tmp_path / "server" / "taskhub" / "server" / "version.py"
    module.parent.mkdir(parents=True)
    module.write_text("")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    env = {"GIT_COMMITTER_DATE": "2024-02-29T12:34:56+01:00"}
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one"],
        check=True,
        env=os.environ | env,
    )
    found = build_info(module)
    assert found.commit_sha == git(tmp_path, "rev-parse", "HEAD") and len(found.commit_sha) == 40
    assert found.commit_time == int(datetime(2024, 2, 29, 11, 34, 56, tzinfo=UTC).timestamp()) * 1_000_000


# -- gRPC, the clients, the CLI -------------------------------------------------------


async def test_grpc_and_both_python_clients(service, stub):
    from taskhub.client import AsyncTaskHubClient, TaskHubClient
    from taskhub.v1 import task_service_pb2 as pb

    answer = await stub.GetVersion(pb.GetVersionRequest())
    expected = expected_version()
    assert answer.pkg_version == expected["pkgVersion"]
    assert (answer.commit_sha if answer.HasField("commit_sha") else "unknown") == expected["commitSha"]
    assert answer.HasField("commit_date") == (expected["commitDate"] != "unknown")

    async with AsyncTaskHubClient(service.grpc_target) as client:
        version = await client.get_version()
    assert version.to_dict() == expected
    assert version.pkg_version == expected["pkgVersion"]
    with TaskHubClient(service.grpc_target) as client:  # blocking: off the loop that serves it
        assert await asyncio.to_thread(client.get_version) == version


async def test_grpc_get_version_needs_the_version_action(secured_service):
    from taskhub.v1 import key_service_pb2 as kpb, key_service_pb2_grpc, task_service_pb2 as pb, task_service_pb2_grpc

    async with grpc.aio.insecure_channel(secured_service.grpc_target) as channel:
        admin = key_service_pb2_grpc.KeyServiceStub(channel)
        master = (("authorization", f"Bearer {MASTER_KEY}"),)
        tasks = task_service_pb2_grpc.TaskServiceStub(channel)
        for actions, allowed in ((["tasks.*"], False), (["version"], True), (["*"], True)):
            made = await admin.CreateKey(kpb.CreateKeyRequest(actions=actions, indexes=["movies"]), metadata=master)
            call = tasks.GetVersion(pb.GetVersionRequest(), metadata=(("authorization", f"Bearer {made.key.key}"),))
            if allowed:
                assert (await call).pkg_version == importlib.metadata.version("taskhub")
            else:
                code, reason, _ = await error_of(call)
                assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "invalid_api_key")


async def test_the_cli_prints_the_servers_version(service):
    target = {"TASKHUB_TARGET": service.grpc_target}
    code, out, err = await taskhub("version", "--json", **target)
    assert (code, err) == (0, "")
    assert out == json.dumps(expected_version(), separators=(",", ":")) + "\n"  # one line, in Meilisearch's order
    code, out, err = await taskhub("version", **target)
    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == VERSION_KEYS
    assert out.splitlines()[2].split() == ["pkgVersion", importlib.metadata.version("taskhub")]


async def test_the_cli_names_the_api_key_flag_when_refused(secured_service):
    code, _, err = await taskhub("version", "--target", secured_service.grpc_target)
    assert code == 4 and "--api-key" in err and err.endswith("(missing_authorization_header)\n"), err
    code, out, _ = await taskhub(
        "version", "--json", TASKHUB_TARGET=secured_service.grpc_target, TASKHUB_API_KEY=MASTER_KEY
    )
    assert code == 0 and out.startswith('{"commitSha":')
