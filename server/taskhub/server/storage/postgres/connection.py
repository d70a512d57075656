"""A PostgreSQL connection that comes back, and the URL it connects with: no password in it.

A server outlives its connections (a database restart, a failover, a backend ended by an
operator). A statement outside a transaction (a read, a unit of work's BEGIN) that finds its
connection lost runs once more on a new one. Inside a transaction nothing reconnects: the
transaction is gone, and its unit of work fails whole with `StorageUnavailable` (`unavailable`,
503: the clients retry, an enqueue under its idempotency key). A statement cut by
`statement_timeout` fails the same way.

The password never travels in the URL the server uses (`server_url`): one given in the URL or in
a password file goes to a private pgpass file that the URL names (`passfile=`), so no argument
list (`ps` shows pg_dump's), log line or libpq error can carry it. Without one, libpq's own ways
(PGPASSWORD, PGPASSFILE, ~/.pgpass) apply as usual.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg.conninfo
from psycopg.types.array import ListBinaryDumper

from taskhub.server.storage.contract import StorageUnavailable

# A libpq URL's password: in the user info (`user:PASSWORD@`) or as a query parameter (`password=`).
_USERINFO = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:@/?#]*):(?P<password>[^/?#]*)@", re.IGNORECASE)
_QUERY = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&#]*)", re.IGNORECASE)
# How long a new connection may take before the store says the database is unavailable, unless the URL says
# (libpq's default is to wait for as long as the operating system does).
CONNECT_TIMEOUT = 10


def url_password(url: str) -> str | None:
    """The password written in a libpq URL, decoded; None when it has none."""
    for pattern in (_USERINFO, _QUERY):
        found = pattern.search(url)
        if found:
            return urllib.parse.unquote(found.group("password"))
    return None


def redact(url: str) -> str:
    """The URL as logs and errors show it: its password masked (`user:***@`, `password=***`)."""
    url = _USERINFO.sub(lambda m: f"{m.group('head')}:***@", url)
    return _QUERY.sub(lambda m: f"{m.group('head')}***", url)


_passfiles: dict[str, str] = {}
_folder: str | None = None


def _passfile(password: str) -> str:
    """A private pgpass file (mode 0600 in a 0700 folder, gone at exit) giving `password` to any host."""
    global _folder
    if password in _passfiles:
        return _passfiles[password]
    if _folder is None:
        _folder = tempfile.mkdtemp(prefix="taskhub-pgpass-")
        atexit.register(shutil.rmtree, _folder, True)
    path = os.path.join(_folder, f"pgpass-{len(_passfiles)}")
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(f"*:*:*:*:{escaped}\n")
    _passfiles[password] = path
    return path


def read_password_file(path: str) -> str:
    """The password a `--db-password-file` holds: its first line (a trailing newline is not part of it)."""
    try:
        with open(path, encoding="utf-8") as file:
            line = file.readline().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"--db-password-file: cannot read {path}: {exc.strerror}") from None
    if not line:
        raise ValueError(f"--db-password-file: {path} is empty")
    return line


def server_url(url: str, *, password_file: str | None = None, statement_timeout_ms: int = 0) -> str:
    """The URL the server connects with: the same database, its password (the URL's or the file's) moved to a
    private pgpass file named by `passfile=`, and `statement_timeout` in its `options` when one is set. Every
    connection made from it (the store's, pg_dump's) has both; a URL with neither is answered as it is."""
    password = url_password(url)
    if password_file:
        if password is not None:
            raise ValueError("the database URL has a password and --db-password-file gives one: give it once")
        password = read_password_file(password_file)
    if password is None and not statement_timeout_ms:
        return url
    parts = urllib.parse.urlsplit(url)
    user, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}@{hosts}" if at else hosts
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
    if password is not None:
        query.append(("passfile", _passfile(password)))
    if statement_timeout_ms:
        options = [v for k, v in query if k == "options"]
        query = [(k, v) for k, v in query if k != "options"]
        query.append(("options", " ".join([*options, f"-c statement_timeout={int(statement_timeout_ms)}"])))
    # Percent-encoded, never `+` for a space: libpq reads a URL's `+` as itself.
    encoded = urllib.parse.urlencode(query, safe="/", quote_via=urllib.parse.quote)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=encoded))


def connect(url: str, **options: Any) -> psycopg.Connection:
    """`psycopg.connect` with a bounded wait (CONNECT_TIMEOUT unless the URL sets one). A database that cannot be
    reached is `StorageUnavailable`; a URL libpq refuses is a ValueError; both name the URL redacted."""
    try:
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(url):
            options.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return psycopg.connect(url, **options)
    except psycopg.OperationalError as exc:
        raise StorageUnavailable(f"cannot connect to {redact(url)}: {_scrub(exc, url)}") from None
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"the database URL {redact(url)} is not valid: {_scrub(exc, url)}") from None


def _scrub(exc: Exception, url: str) -> str:
    """libpq's message, with any echo of the URL's password masked (it quotes bad parts of a URL)."""
    text = str(exc).strip()
    password = url_password(url)
    for secret in (password, password and urllib.parse.quote(password)):
        if secret:
            text = text.replace(secret, "***")
    return text


# SQLSTATEs of a server ending the session: shutting down (a restart), crashed, or starting up.
_ENDED = frozenset({"57P01", "57P02", "57P03"})


def _lost(conn: psycopg.Connection, exc: psycopg.OperationalError) -> bool:
    """Whether `exc` says the connection is gone: closed or broken, the server ending it, or a failure of the client's
    own (no SQLSTATE: a socket error, a pipeline cut short, which may leave the connection looking well). A lost
    connection is closed, so that its next use opens a new one."""
    state = exc.sqlstate
    gone = conn.closed or conn.broken or state is None or state.startswith("08") or state in _ENDED
    if gone and not conn.closed:
        with contextlib.suppress(Exception):
            conn.close()
    return gone


class Connection:
    """`execute` and `cursor` as psycopg's, on the current connection; `setup` runs on each new one."""

    def __init__(self, url: str, setup: Callable[[psycopg.Connection], None] = lambda conn: None) -> None:
        self.url = url
        self._setup = setup
        self.in_transaction = False
        self._closed = False  # by `close()`: for good, unlike a connection lost
        self._conn: psycopg.Connection | None = None
        self._open()

    def _open(self) -> psycopg.Connection:
        # Autocommit: transactions are begun by hand, where the contract opens them.
        conn = connect(self.url, autocommit=True)
        # Lists (the arrays every write passes to `unnest`, the uids of `= ANY`) go in binary: psycopg's text
        # form escapes each element in Python, which for a unit's rows of JSON cost more than the rest of it.
        conn.adapters.register_dumper(list, ListBinaryDumper)
        try:
            self._setup(conn)
        except psycopg.OperationalError as exc:
            conn.close()
            raise StorageUnavailable(str(exc)) from exc
        self._conn = conn
        return conn

    def _current(self) -> psycopg.Connection:
        if self._closed:
            raise psycopg.OperationalError("the connection is closed")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self.in_transaction:
            raise StorageUnavailable("the connection was lost in the middle of a unit of work")
        return self._open()

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor:
        conn = self._current()
        try:
            return conn.execute(query, params)
        except psycopg.errors.QueryCanceled as exc:
            raise StorageUnavailable(f"a statement ran past the statement timeout: {exc}") from exc
        except psycopg.OperationalError as exc:
            if self._closed or not _lost(conn, exc):
                raise
            if self.in_transaction:
                raise StorageUnavailable(str(exc)) from exc
        # Lost outside a transaction (a read, or a unit of work's BEGIN): nothing was done; once more, anew.
        try:
            return self._open().execute(query, params)
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(str(exc)) from exc

    @contextlib.contextmanager
    def cursor(self) -> Iterator[psycopg.Cursor]:
        """A cursor for the block (writes, in a unit of work): a connection lost or a statement cut short in it
        fails the unit as `StorageUnavailable`, as `execute` does."""
        conn = self._current()
        try:
            with conn.cursor() as cursor:
                yield cursor
        except psycopg.errors.QueryCanceled as exc:
            raise StorageUnavailable(f"a statement ran past the statement timeout: {exc}") from exc
        except psycopg.OperationalError as exc:
            if _lost(conn, exc):
                raise StorageUnavailable(str(exc)) from exc
            raise

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()


class Probe:
    """Whether the database answers now (`SELECT 1` on a connection of its own, opened again when lost)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.reason = ""  # why the last probe failed (libpq's words, the URL redacted)
        self._conn: psycopg.Connection | None = None

    def alive(self) -> bool:
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self.url, autocommit=True, connect_timeout=3)
            self._conn.execute("SELECT 1")
            return True
        except StorageUnavailable as exc:
            self.reason = exc.detail
        except (psycopg.Error, ValueError) as exc:
            self.reason = _scrub(exc, self.url)
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
