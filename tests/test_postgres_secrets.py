"""The PostgreSQL password: every way of giving it works, and it never shows in a log, `ps`, an error or pg_dump's
arguments. libpq parameters (`sslmode`) pass through the URL. A cluster role that must log in with a password,
checked by scram-sha-256 or md5."""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import secrets
import subprocess
import sys
import time

import grpc
import pytest

from helpers import enqueue
from taskhub.server import app
from taskhub.server.config import Config
from taskhub.server.storage.contract import StorageUnavailable
from taskhub.server.storage.postgres.connection import redact, server_url, url_password
from taskhub.v1 import task_service_pb2 as pb, task_service_pb2_grpc

# Percent-encoding, a colon and a backslash: what a pgpass line and a URL must both escape.
PASSWORD = "pa:ss\\w%rd-" + secrets.token_hex(4)
WRONG = "wrong-" + secrets.token_hex(6)
_names = iter(range(1_000_000))


@pytest.fixture(scope="module")
def roles(postgres_cluster):
    """Two roles that must give PASSWORD: one checked by scram-sha-256, one by md5 (role names are the cluster's)."""
    suffix = secrets.token_hex(3)
    made = {}
    for method in ("scram-sha-256", "md5"):
        name = f"{method.split('-')[0]}_{suffix}"
        postgres_cluster.add_role(name, PASSWORD, method)
        made[method] = name
    return made


@pytest.fixture
def settings(tmp_path) -> Config:
    """A server's settings but its database (each test names its own: these tests are PostgreSQL's whatever
    TASKHUB_TEST_DB says)."""
    return Config(grpc_listen="127.0.0.1:0", no_http=True, snapshots_dir=str(tmp_path / "snapshots"), grace_seconds=0.5)


def database(cluster, owner: str) -> str:
    """A new database owned by `owner`; its URL without a password."""
    return cluster.create_database(f"secret_{next(_names)}_{secrets.token_hex(3)}", owner=owner)


def with_password(url: str, password: str) -> str:
    from urllib.parse import quote

    return url.replace("@", f":{quote(password, safe='')}@", 1)


def test_the_cluster_refuses_the_role_without_its_password(postgres_cluster, roles):
    import psycopg

    url = database(postgres_cluster, roles["scram-sha-256"])
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url, connect_timeout=5).close()
    psycopg.connect(with_password(url, PASSWORD), connect_timeout=5).close()


async def _serves(config, clock) -> str:
    """Starts a server on `config`, enqueues and reads one task back; answers the URL the store connects with."""
    service = await app.start(config, background=False, clock=clock)
    try:
        async with grpc.aio.insecure_channel(service.grpc_target) as channel:
            stub = task_service_pb2_grpc.TaskServiceStub(channel)
            uid = await enqueue(stub)
            assert (await stub.GetTask(pb.GetTaskRequest(uid=uid))).task.uid == uid
        return service.store.url
    finally:
        await service.stop(0)


@pytest.mark.parametrize("method", ["scram-sha-256", "md5"])
@pytest.mark.parametrize("way", ["password_file", "url", "PGPASSWORD", "PGPASSFILE", "pgpass_in_home"])
async def test_each_way_of_giving_the_password_serves(
    settings, postgres_cluster, roles, clock, tmp_path, monkeypatch, caplog, way, method
):
    caplog.set_level(logging.DEBUG)
    url = database(postgres_cluster, roles[method])
    changes: dict = {"db": url}
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    if way == "password_file":
        (tmp_path / "pw").write_text(PASSWORD + "\n")
        changes["db_password_file"] = str(tmp_path / "pw")
    elif way == "url":
        changes["db"] = with_password(url, PASSWORD)
    elif way == "PGPASSWORD":
        monkeypatch.setenv("PGPASSWORD", PASSWORD)
    elif way == "PGPASSFILE":
        (tmp_path / "passfile").write_text(f"127.0.0.1:*:*:{roles[method]}:{escaped}\n")
        (tmp_path / "passfile").chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "passfile"))
    else:
        (tmp_path / ".pgpass").write_text(f"*:*:*:*:{escaped}\n")
        (tmp_path / ".pgpass").chmod(0o600)
        monkeypatch.setenv("HOME", str(tmp_path))
    store_url = await _serves(dataclasses.replace(settings, **changes), clock)
    assert url_password(store_url) is None  # what pg_dump would be given as an argument
    assert PASSWORD not in caplog.text


async def test_a_snapshot_under_password_auth_gives_pg_dump_no_password_argument(
    settings, postgres_cluster, roles, clock, tmp_path
):
    """pg_dump is run with the store's URL as an argument (visible in `ps`): it finds the password in the private
    passfile the URL names, and the snapshot restores."""
    url = database(postgres_cluster, roles["scram-sha-256"])
    (tmp_path / "pw").write_text(PASSWORD)
    served = dataclasses.replace(settings, db=url, db_password_file=str(tmp_path / "pw"))
    service = await app.start(served, background=False, clock=clock)
    try:
        target = tmp_path / "snap.dump"
        await service.scheduler.call(service.store.backup, target)
        assert target.stat().st_size > 0
        assert PASSWORD not in service.store.url
    finally:
        await service.stop(0)


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "taskhub.server.cli", "serve", "--no-http", "--grpc-listen", "127.0.0.1:0", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_wrong_password_fails_the_start_clearly_without_showing_it(postgres_cluster, roles, tmp_path):
    url = database(postgres_cluster, roles["scram-sha-256"])
    (tmp_path / "pw").write_text(WRONG)
    outputs = []
    for args, env in [
        (["--db", url, "--db-password-file", str(tmp_path / "pw")], None),
        ([], {"TASKHUB_DB": with_password(url, WRONG)}),
        (["--db", with_password(url, WRONG)], None),
    ]:
        proc = _serve(args, env)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 1, output
        assert "password authentication failed" in output, output
        assert WRONG not in output and "Traceback" not in output, output
        outputs.append(output)
    # Only the URL given on the command line is warned about.
    assert ["carries a password" in output for output in outputs] == [False, False, True]


def test_a_password_on_the_command_line_is_warned_about_and_a_password_file_shows_nowhere(
    postgres_cluster, roles, tmp_path
):
    url = database(postgres_cluster, roles["md5"])
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    warned = _serve(["--db", with_password(url, WRONG), "--log-level", "INFO"])
    output, _ = warned.communicate(timeout=60)
    assert "the --db URL carries a password" in output and "--db-password-file" in output, output
    assert WRONG not in output
    # With the file: `ps` (the command lines of the server and anything it runs) never holds the password.
    proc = _serve(["--db", url, "--db-password-file", str(tmp_path / "pw")])
    try:
        deadline = time.monotonic() + 30
        seen = ""
        while time.monotonic() < deadline and "database" not in seen:
            seen += proc.stdout.readline()
            assert proc.poll() is None, seen
        assert "gRPC listening" in seen and "carries a password" not in seen, seen
        cmdlines = [pathlib.Path(f"/proc/{proc.pid}/cmdline").read_bytes()]
        for child in pathlib.Path(f"/proc/{proc.pid}/task").glob("*/children"):
            for pid in child.read_text().split():
                cmdlines.append(pathlib.Path(f"/proc/{pid}/cmdline").read_bytes())
        assert all(PASSWORD.encode() not in line for line in cmdlines)
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert PASSWORD not in seen + output


def test_the_urls_we_show_and_connect_with_carry_no_password(tmp_path):
    url = "postgresql://u:p%40ss%3Aw@127.0.0.1:5432/db?sslmode=disable&application_name=a%20b"
    assert redact(url) == "postgresql://u:***@127.0.0.1:5432/db?sslmode=disable&application_name=a%20b"
    assert redact("postgres://u@h/db?password=x&sslmode=require") == "postgres://u@h/db?password=***&sslmode=require"
    secured = server_url(url, statement_timeout_ms=1500)
    assert url_password(secured) is None and "p@ss" not in secured and "p%40ss" not in secured
    assert "sslmode=disable" in secured and "application_name=a%20b" in secured
    assert "statement_timeout%3D1500" in secured
    passfile = secured.split("passfile=")[1].split("&")[0].replace("%2F", "/")
    assert pathlib.Path(passfile).read_text() == "*:*:*:*:p@ss\\:w\n"
    assert pathlib.Path(passfile).stat().st_mode & 0o077 == 0
    (tmp_path / "pw").write_text("x")
    with pytest.raises(ValueError, match="give it once"):
        server_url(url, password_file=str(tmp_path / "pw"))
    assert server_url("postgresql://u@h/db") == "postgresql://u@h/db"


async def test_sslmode_passes_through_the_url(settings, postgres_cluster, clock):
    url = postgres_cluster.create_database(f"ssl_{next(_names)}_{secrets.token_hex(3)}")
    await _serves(dataclasses.replace(settings, db=url + "?sslmode=disable"), clock)
    # The throwaway cluster has no certificate: requiring SSL fails the start, saying why.
    with pytest.raises(StorageUnavailable) as refused:
        await app.start(dataclasses.replace(settings, db=url + "?sslmode=require"), background=False, clock=clock)
    assert "SSL" in refused.value.detail
    proc = _serve(["--db", url + "?sslmode=require"])
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "SSL" in output and "Traceback" not in output, output
