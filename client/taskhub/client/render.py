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
    return f"{task.type.value} on {task.index_uid}" if task.index_uid is not None else task.type.value


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


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    # Numbers read best right-aligned; the first column is the uid.
    return "\n".join(
        "  ".join(cell.rjust(w) if i == 0 else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))).rstrip()
        for line in lines)


def task_table(tasks: Sequence[Task]) -> str:
    rows = [[str(t.uid), _cell(t.index_uid), t.type.value, t.status.value,
             t.to_dict()["enqueuedAt"], human_duration(t.duration)] for t in tasks]
    return table(["UID", "INDEX", "TYPE", "STATUS", "ENQUEUED AT", "DURATION"], rows)


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
