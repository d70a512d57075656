"""One server per SQLite file: a kernel lock on `<db>.lock`, held while the service runs.

The kernel drops the lock when its holder dies, even by SIGKILL, so a restart never
finds a stale lock as a pidfile would leave. Only the service takes it: readers,
snapshots and the bench loader open the database without it.
"""

from __future__ import annotations

import fcntl
import os
import pathlib


class DatabaseLocked(OSError):
    """Another server holds the database's lock."""


class ServerLock:
    """An exclusive lock on `<db>.lock`; the file keeps the holder's pid for the next one's message.

    `flock` rather than `fcntl` record locks: a flock belongs to the open file, so a
    second service in the same process is refused too, and closing some other
    descriptor of the file does not drop it.
    """

    def __init__(self, db: str | pathlib.Path) -> None:
        # The file itself, however it is named: a symlink or another relative path is the same database.
        self.path = pathlib.Path(str(pathlib.Path(db).resolve()) + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            by = f" (pid {holder})" if holder.isdigit() else ""
            raise DatabaseLocked(
                f"another taskhub server{by} is serving {db}: it holds the lock {self.path}."
                " Stop it, or give this one another --db"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlocks; the file stays (removing it would race a server that opened it meanwhile)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
