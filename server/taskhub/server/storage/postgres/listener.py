"""Commits made by other servers on the database, as they happen: LISTEN on a connection of its own.

Every unit of work that logged changes sends `NOTIFY taskhub_changes` in its transaction, so
the notification is delivered at its commit, in commit order. A thread waits for them and wakes
the follower; a lost connection is opened again, and the follower woken then too (it reads the
log from where it stands, so whatever was sent meanwhile is caught up).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from taskhub.server.storage.contract import StorageUnavailable
from taskhub.server.storage.postgres.connection import connect

log = logging.getLogger(__name__)

CHANNEL = "taskhub_changes"
# How long a wait for notifications lasts before the thread looks whether it should stop, in seconds.
_WAIT = 0.5
# The pause before opening a lost connection again, in seconds.
_RECONNECT = 0.5


class Listener:
    """A thread that calls `wake(seq)` on each notification on CHANNEL (its payload, the newest sequence number
    committed), and `wake(None)` after each reconnection."""

    def __init__(self, url: str, wake: Callable[[int | None], None]) -> None:
        self.url = url
        self.wake = wake
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskhub-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        lost = False
        while not self._stopping.is_set():
            try:
                with connect(self.url, autocommit=True) as conn:  # a bounded wait, the password kept out
                    conn.execute(f"LISTEN {CHANNEL}")
                    if lost:  # what was committed while no one listened: the follower reads it from the log
                        log.info("listening for commits again")
                        self.wake(None)
                    lost = False
                    while not self._stopping.is_set():
                        for notify in conn.notifies(timeout=_WAIT, stop_after=1):
                            self.wake(int(notify.payload) if notify.payload.isdigit() else None)
            except (psycopg.Error, StorageUnavailable) as exc:
                if self._stopping.is_set():
                    return
                if not lost:
                    log.warning("the connection listening for commits was lost (%s); opening another", exc)
                lost = True
                self.wake(None)
                self._stopping.wait(_RECONNECT)

    def stop(self) -> None:
        """Returns at once; the thread closes its connection at its next look (within `_WAIT`)."""
        self._stopping.set()
