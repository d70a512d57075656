"""What the CLI prints: tables and one-line states for people, JSON for scripts.

`cli.py` calls these; JSON output is Meilisearch's shapes (`Task.to_dict()` and
friends), human output never is parsed by anything. `LiveLine` rewrites one line
on a terminal and prints one line per change anywhere else (logs, pipes).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TextIO

from taskhub.client.models import Task, TaskChange, TaskPage, TaskStatus, TaskSummary


def to_json(value: Any) -> str:
    """One compact line of JSON; non-ASCII index names and messages stay readable."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def human_duration(duration: timedelta | None) -> str:
    if duration is None:
        return "-"
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.3f}s"
    return str(timedelta(seconds=round(seconds)))  # "1:01:40", "1 day, 0:00:02"


def _what(task: Task | TaskSummary) -> str:
    return f"{task.type} on {task.index_uid}" if task.index_uid is not None else str(task.type)


def status_line(task: Task) -> str:
    """`task 4 (documentAdditionOrUpdate on movies): succeeded in 0.012s`, and so on per status."""
    text = f"task {task.uid} ({_what(task)}): {task.status.value}"
    if task.status == TaskStatus.SUCCEEDED:
        text += f" in {human_duration(task.duration)}"
    elif task.status == TaskStatus.FAILED and task.error is not None:
        text += f": {task.error.message} ({task.error.code})"
    elif task.status == TaskStatus.CANCELED and task.canceled_by is not None:
        text += f" by task {task.canceled_by}"
    return text


def change_line(change: TaskChange) -> str:
    """`#12 task 4 (documentAdditionOrUpdate on movies): processing`: one committed change, with its sequence."""
    if change.deleted:
        return f"#{change.sequence} task {change.task.uid} ({_what(change.task)}): deleted"
    return f"#{change.sequence} {status_line(change.task)}"


def summary_line(summary: TaskSummary) -> str:
    return f"enqueued task {summary.task_uid} ({_what(summary)})"


def requeued_line(task: Task) -> str:
    return f"enqueued task {task.uid} ({_what(task)}), requeued from task {task.requeued_from}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return to_json(value)
    return str(value)


def card(fields: dict[str, Any]) -> str:
    """One field per line, names aligned: `tasks get` and the `keys` commands print these."""
    width = max(len(name) for name in fields)
    return "\n".join(f"{name:<{width}}  {_cell(value)}" for name, value in fields.items())


def task_card(task: Task) -> str:
    """Every field of one task, one per line, in Meilisearch's order."""
    return card(task.to_dict())


ELLIPSIS = "…"
_GAP = "  "


def _fit(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + ELLIPSIS


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int | None = None, flexible: Sequence[int] = ()
) -> str:
    """Aligned columns; with a `width`, the `flexible` ones narrow (widest first, never below their
    header) until a line fits, and a cell that no longer fits ends in an ellipsis."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    if width is not None:
        over = sum(widths) + len(_GAP) * (len(widths) - 1) - width
        while over > 0:
            shrinkable = [i for i in flexible if widths[i] > max(len(headers[i]), 2)]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
            over -= 1
    lines = [headers, *rows]
    # Numbers read best right-aligned; the first column is the uid.
    return "\n".join(
        _GAP.join(
            _fit(cell, w).rjust(w) if i == 0 else _fit(cell, w).ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths))
        ).rstrip()
        for line in lines
    )


def short_time(rfc3339: str | None) -> str:
    """`2023-11-14T22:13:20.001000Z` -> `2023-11-14 22:13:20`: to the second, for a narrow column."""
    return "-" if rfc3339 is None else rfc3339[:10] + " " + rfc3339[11:19]


def task_table(tasks: Sequence[Task], width: int | None = None) -> str:
    """UID, index, type, status, enqueued at, duration; fitted to `width` (dates to the second, in UTC)
    unless it is None, which prints every character."""

    def when(task: Task) -> str:
        text = task.to_dict()["enqueuedAt"]
        return text if width is None else short_time(text)

    rows = [
        [str(t.uid), _cell(t.index_uid), str(t.type), t.status.value, when(t), human_duration(t.duration)]
        for t in tasks
    ]
    enqueued = "ENQUEUED AT" if width is None else "ENQUEUED (UTC)"
    return table(["UID", "INDEX", "TYPE", "STATUS", enqueued, "DURATION"], rows, width=width, flexible=(1, 2))


def page_footer(page: TaskPage) -> str:
    text = f"{len(page.results)} of {page.total} tasks"
    if page.next is not None:
        text += f"; next page: --from {page.next}"
    return text


class LiveLine:
    """A status line: rewritten in place on a terminal, one line per change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.shown = False

    def show(self, text: str) -> None:
        if self.tty:
            # \r goes back to the line start, ESC[K clears what a longer previous state left.
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()
