"""A throwaway PostgreSQL cluster for tests and benches: its own folder, 127.0.0.1, a free port.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user
(in a folder that user owns); as anyone else it belongs to the caller. The server binaries
are found on PATH or in Debian's /usr/lib/postgresql/<version>/bin. The cluster trades
durability for speed (fsync off): it lives as long as one test session. Benches that report
figures start it `durable` (fsync, full-page writes and synchronous commits on, PostgreSQL's defaults).
"""

from __future__ import annotations

import glob
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


def available() -> bool:
    """Whether the PostgreSQL server binaries are installed."""
    return _binary("initdb") is not None and _binary("pg_ctl") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    """A running cluster; `url(db)` addresses one of its databases as the `postgres` superuser."""

    folder: pathlib.Path
    port: int
    _as_user: list[str]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; answers its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            [*self._as_user, _binary("pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start(*, durable: bool = False) -> Cluster:
    """Makes and starts a cluster; the caller stops it. `durable`: every commit flushed, as in production."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    folder = pathlib.Path(tempfile.mkdtemp(prefix="taskhub-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    safety = "-c fsync=on -c synchronous_commit=on" if durable else "-c fsync=off -c full_page_writes=off"
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} {safety} -c max_connections=200"
    started = subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}{log}")
    return Cluster(folder, port, as_user)
