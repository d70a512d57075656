"""A throwaway PostgreSQL cluster for tests and benches: its own folder, 127.0.0.1, a free port.

`initdb` refuses to run as root, so as root the cluster belongs to the `postgres` user
(in a folder that user owns); as anyone else it belongs to the caller. The server binaries
are found on PATH or in Debian's /usr/lib/postgresql/<version>/bin. The cluster trades
durability for speed (fsync off): it lives as long as one test session. Benches that report
figures start it `durable` (fsync, full-page writes and synchronous commits on, PostgreSQL's defaults).

The `postgres` superuser logs in without a password (trust); `add_role` makes roles that must
give one (scram-sha-256 or md5), for the tests of how the server is given its password.
`stop_server` and `start_server` take the cluster down and up again on the same port and data,
for the tests of a database outage.
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
    _options: str = ""

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, owner: str | None = None) -> str:
        """A new empty database (owned by `owner`, a role of `add_role`, if given); answers its URL as its owner,
        without a password."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        return self.url(name, owner or "postgres")

    def drop_database(self, name: str) -> None:
        """Drops a database, ending any connection still on it."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def add_role(self, name: str, password: str, method: str = "scram-sha-256") -> None:
        """A role that logs in over TCP with `password` only, checked by `method` (`scram-sha-256` or `md5`)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            # How the password is stored decides what the server can check it with: md5 needs an md5 hash.
            conn.execute(
                sql.SQL("SET password_encryption = {}").format(sql.Literal("md5" if method == "md5" else method))
            )
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password))
            )
            hba = pathlib.Path(conn.execute("SHOW hba_file").fetchone()[0])
            # First match wins: this role's line goes above initdb's `trust` ones.
            hba.write_text(f"host all {name} 127.0.0.1/32 {method}\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._as_user, _binary("pg_ctl"), "-D", str(self.folder / "data"), *args],
            capture_output=True,
            text=True,
        )

    def start_server(self) -> None:
        """Starts the server (again) on the same port and data; waits until it accepts connections."""
        started = self._pg_ctl("-o", self._options, "-l", str(self.folder / "log"), "-w", "start")
        if started.returncode != 0:
            log = (self.folder / "log").read_text() if (self.folder / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {started.stderr}{log}")

    def stop_server(self, mode: str = "fast") -> None:
        """Stops the server, keeping its data: `fast` ends every connection (as a restart does), `immediate`
        as a crash."""
        self._pg_ctl("-m", mode, "-w", "stop")

    def stop(self) -> None:
        self.stop_server("immediate")
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
    cluster = Cluster(folder, port, as_user, options)
    try:
        cluster.start_server()
    except RuntimeError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return cluster
