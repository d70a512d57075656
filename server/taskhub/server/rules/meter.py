"""What the rules tell about their work, for whoever measures it (`taskhub.server.metrics`).

`Units` holds one `Meter` and tells it of every unit of work that committed (its name, how
long it took), of every change the follower takes (in sequence order, and whether the change
is one of this process's commits) and of the events the rules `note` inside a unit of work,
once that unit commits. This base measures nothing, so the rules run the same without it.
Every method runs on the store thread, except `group_commit` (on the event loop).
"""

from __future__ import annotations

from taskhub.server.storage.contract import Changes


class Meter:
    """Measures nothing: a subclass overrides what it measures."""

    def started(self, next_uid: int) -> None:
        """The follower stands after every stored task; the next one inserted gets `next_uid`."""

    def unit(self, name: str, seconds: float) -> None:
        """A unit of work named `name` (its rule function's name) committed, `seconds` after it began."""

    def followed(self, changes: Changes, own: tuple[int, int] | None) -> None:
        """Changes the finder took, in sequence order; `own` is the (first, last) sequence numbers of this
        process's commit among them, if any."""

    def noted(self, events: list[tuple[str, str, int]]) -> None:
        """A committed unit of work's events: (event, label, count), as `Units.note` took them."""

    def group_commit(self, tasks: int) -> None:
        """A group commit of `tasks` new tasks starts."""
