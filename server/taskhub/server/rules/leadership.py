"""Replicas and their leader: which server on a database runs the server's own work.

Any number of servers (replicas) may serve one database, each answering any call. The work
no caller asks for (cancelations, deletions, snapshots and dumps, lease expiry, the cleanup,
pruning) is the leader's alone. The leader is a row: a name, a term and a deadline. The
leader renews the deadline every second; once it passed, any replica takes over with the
next term. Every unit of work the leader runs checks the row first (`Replica.check`) and
does nothing unless it still holds its term, so a leader that was stopped (SIGSTOP, a frozen
machine) and comes back runs none of the work it lost: the term fences it. Deadlines are
read off each replica's clock, so replicas' clocks must agree to well within `TERM` (as
they must for lease deadlines, which one replica sets and another expires).

On a database one server alone may serve (SQLite), that server takes the lead at start with
no deadline, and keeps it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from taskhub.server.storage.contract import Leader, Transaction

log = logging.getLogger(__name__)
T = TypeVar("T")

SECOND = 1_000_000
# How long a leader's lead lasts unless renewed; a replica takes over at most this long after the last renewal.
TERM = 5 * SECOND
# How often each replica renews (the leader) or looks for a lead to take, in seconds.
RENEW_EVERY = 1.0
# Pruning keeps the changes of replicas that reported their position this recently.
SEEN_WITHIN = 60 * SECOND
# The deadline of a lead that never lapses (the one server of a database no other may serve).
FOREVER = 2**62


class NotLeading(Exception):
    """A unit of work of the leader's found this replica no longer leads: it did nothing."""


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """What this replica is, for logs, metrics and health: its name, whether it leads now, in which term."""

    name: str
    leads: bool
    term: int


class Replica:
    """This server among those on its database: its name and the term it leads in (0: it does not lead).

    `shared`: other servers may serve the database at once (PostgreSQL), so the lead has a deadline.
    `observers` are told each change of the view (a lead taken or lost), on the event loop.
    """

    def __init__(self, name: str, *, shared: bool) -> None:
        self.name = name
        self.shared = shared
        self.term = 0
        # Where the slowest live replica stands in the change log, as of the last renewal (None: no report).
        self.slowest: int | None = None
        self.observers: list[Callable[[ReplicaView], None]] = []

    @property
    def leads(self) -> bool:
        return self.term != 0

    @property
    def view(self) -> ReplicaView:
        return ReplicaView(self.name, self.leads, self.term)

    def check(self, tx: Transaction) -> None:
        """Inside a unit of work: raises NotLeading (which rolls it back) unless this replica holds its term."""
        leader = tx.replicas.leader()
        if self.term == 0 or leader.term != self.term or leader.name != self.name:
            raise NotLeading(f"{self.name} does not lead in term {leader.term}")

    def fenced(self, fn: Callable[..., T]) -> Callable[..., T]:
        """`fn(tx, *args)` as a unit of work of the leader's: checked first."""

        @functools.wraps(fn)  # the unit keeps the rule's name (the metrics label units of work by it)
        def unit(tx: Transaction, *args: Any) -> T:
            self.check(tx)
            return fn(tx, *args)

        return unit

    def renew(self, tx: Transaction, now: int, seq: int) -> int:
        """In a unit of work: reports this replica's position, renews its lead or takes a lapsed one.

        Answers the term it leads in after this unit commits (0: none); the caller sets `term` from it.
        """
        if self.shared:
            tx.replicas.report(self.name, seq, now)
            self.slowest = tx.replicas.slowest(now - SEEN_WITHIN)
        deadline = now + TERM if self.shared else FOREVER
        leader = tx.replicas.leader()
        if self.term != 0 and leader.term == self.term and leader.name == self.name:
            tx.replicas.set_leader(Leader(self.name, self.term, deadline))
            return self.term
        if leader.deadline <= now:
            tx.replicas.set_leader(Leader(self.name, leader.term + 1, deadline))
            return leader.term + 1
        return 0

    def resign(self, tx: Transaction) -> None:
        """In a unit of work, at a clean stop: the lead lapses now (another replica takes it at its next
        renewal), and this replica's position no longer holds the log."""
        leader = tx.replicas.leader()
        if self.term != 0 and leader.term == self.term and leader.name == self.name:
            tx.replicas.set_leader(Leader(self.name, self.term, 0))
        tx.replicas.leave(self.name)

    def became(self, term: int, *, resigned: bool = False) -> None:
        """On the loop, after a renewal (or `resign`) committed: the term it now leads in; observers hear of a
        change."""
        if term == self.term:
            return
        was, self.term = self.term, term
        if term:
            log.info("replica %s leads (term %d)", self.name, term)
        elif resigned:
            log.info("replica %s hands the lead over (term %d)", self.name, was)
        else:
            log.warning("replica %s no longer leads (it led in term %d)", self.name, was)
        for observer in self.observers:
            observer(self.view)
