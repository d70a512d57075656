"""Following the change log by sequence number: the spine every read model and watcher hangs on.

A `Follower` stands at a sequence number. After each commit of this process it takes
that commit's changes straight from memory when they come next in sequence; when
another process committed in between (or only it did), it reads what it missed from
the log first. Each change reaches the finder once, in sequence order, and is handed
on (to the watch hub) in that same order.
"""

from __future__ import annotations

from taskhub.server.storage.contract import Changes, Reader, TaskFinder

CHUNK = 10_000


class HistoryLost(Exception):
    """The log no longer holds the changes after the follower's sequence number: they were pruned."""


class Follower:
    """Feeds `finder` every committed change after `seq`, in order."""

    def __init__(self, finder: TaskFinder, seq: int) -> None:
        self.finder = finder
        self.seq = seq

    def take(self, changes: Changes, reader: Reader) -> list[Changes]:
        """A commit of ours: its changes, after any earlier ones it missed; answers what is new, in order."""
        if not changes.tasks or changes.tasks[-1].seq <= self.seq:
            return []
        if changes.tasks[0].seq != self.seq + 1:
            return self.catch_up(reader)
        self.finder.apply(changes)
        self.seq = changes.tasks[-1].seq
        return [changes]

    def catch_up(self, reader: Reader) -> list[Changes]:
        """Every change committed after `seq`, from the log, applied; answers them in order.

        Raises HistoryLost when they are no longer all in the log.
        """
        taken: list[Changes] = []
        while True:
            changes = reader.log.changes_after(self.seq, CHUNK)
            if not changes.tasks:
                if reader.log.last_seq() <= self.seq:
                    return taken
                oldest = reader.log.oldest_change()
                if oldest is not None and oldest <= self.seq + 1:
                    continue  # committed between the two reads
                raise HistoryLost(f"the change log no longer holds the changes after {self.seq}")
            if changes.tasks[0].seq != self.seq + 1:
                raise HistoryLost(f"the change log no longer holds the changes after {self.seq}")
            self.finder.apply(changes)
            self.seq = changes.tasks[-1].seq
            taken.append(changes)
