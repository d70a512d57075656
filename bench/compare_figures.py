"""The figures `compare.py` reads off each bench script's output, named for its table.

The scripts print through `harness.figure` and `harness.ratio_line`; an older revision's scripts
have no other output, so the lines are the interface. Each parser answers the figures in the order
they were printed, each with the direction that is better (None for a control: a figure taskhub's
code does not set, such as huey's rate or the machine's noise, which shows how alike the runs were).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

LATENCY = r"p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms"
NOISE = re.compile(r"\s+machine noise \(spinning\)\s.*?([\d.]+)% of the time lost")


@dataclass
class Figure:
    name: str
    value: float
    better: str | None  # "higher", "lower", or None for a control


def number(text: str) -> float:
    return float(text.replace(",", ""))


def end_to_end(out: str) -> list[Figure]:
    figures, how = [], None
    for line in out.splitlines():
        if m := re.match(r"\s+huey SqliteHuey .*?([\d,]+) tasks/s", line):
            figures.append(Figure("huey tasks/s (control)", number(m[1]), None))
        elif m := re.match(r"\s+taskhub, (.+?)\s+([\d,]+) tasks/s", line):
            how = m[1]
            figures.append(Figure(f"tasks/s [{how}]", number(m[2]), "higher"))
        elif how and (m := re.match(r"\s+enqueuedAt -> finishedAt\s+" + LATENCY, line)):
            figures.append(Figure(f"enqueued -> finished p50 ms [{how}]", float(m[1]), "lower"))
            figures.append(Figure(f"enqueued -> finished p99 ms [{how}]", float(m[2]), "lower"))
        elif how and (m := re.match(r"\s+server CPU\s+(\d+)% of one core", line)):
            figures.append(Figure(f"server CPU % of a core [{how}]", float(m[1]), None))
        elif m := re.match(r"ratio taskhub/huey tasks/s \[(.+)\]: ([\d.]+)", line):
            figures.append(Figure(f"taskhub/huey [{m[1]}]", float(m[2]), "higher"))
    return figures


def get_task(out: str) -> list[Figure]:
    figures, call = [], None
    for line in out.splitlines():
        if m := NOISE.match(line):
            figures.append(Figure("machine noise, % of time lost (control)", float(m[1]), None))
        elif m := re.match(r"\s+(Check|GetTask)\s+([\d,]+) calls/s\s+" + LATENCY, line):
            call = m[1]
            if call == "Check":  # the same server's bare health check: the yardstick
                figures.append(Figure("Check calls/s (control)", number(m[2]), None))
            else:
                figures.append(Figure("GetTask calls/s", number(m[2]), "higher"))
                figures.append(Figure("GetTask p50 ms", float(m[3]), "lower"))
                figures.append(Figure("GetTask p99 ms", float(m[4]), "lower"))
        elif call == "GetTask" and (m := re.match(r"\s+server CPU\s+(\d+) us/call", line)):
            figures.append(Figure("GetTask server CPU us/call", float(m[1]), "lower"))
        elif m := re.match(r"ratio GetTask/Check QPS: ([\d.]+)", line):
            figures.append(Figure("GetTask/Check", float(m[1]), "higher"))
    return figures


def list_tasks(out: str) -> list[Figure]:
    figures, size, name = [], "", None
    sizes = re.findall(r"^ListTasks at ([\d,]+) tasks", out, re.MULTILINE)
    for line in out.splitlines():
        if m := re.match(r"ListTasks at ([\d,]+) tasks", line):
            size = f"{m[1]}: " if len(sizes) > 1 else ""  # the size is in the header unless there are several
        elif m := NOISE.match(line):
            figures.append(Figure("machine noise, % of time lost (control)", float(m[1]), None))
        elif m := re.match(r"  (\S.*?)\s+total\s+[\d,]+$", line):
            name = m[1]
        elif name and (m := re.match(r"\s+taskhub list_tasks\s+" + LATENCY, line)):
            figures.append(Figure(f"{size}{name} p50 ms", float(m[1]), "lower"))
            figures.append(Figure(f"{size}{name} p99 ms", float(m[2]), "lower"))
    return figures


def memory(out: str) -> list[Figure]:
    figures = []
    reading = r"\s+after start\s+([\d,]+) MiB, after reads\s+([\d,]+) MiB"
    for line in out.splitlines():
        if m := re.match(r"\s+(empty database|[\d,]+ tasks)" + reading, line):
            what = "empty" if m[1] == "empty database" else "loaded"
            figures.append(Figure(f"RSS {what}, after start MiB", number(m[2]), "lower"))
            figures.append(Figure(f"RSS {what}, after reads MiB", number(m[3]), "lower"))
        elif m := re.match(r"\s+default settings \(automatic cleanup\)\s+peak\s+([\d,]+) MiB", line):
            figures.append(Figure("RSS peak during the automatic cleanup MiB", number(m[1]), "lower"))
    return figures


PARSERS: dict[str, Callable[[str], list[Figure]]] = {
    "end_to_end": end_to_end,
    "get_task": get_task,
    "list_tasks": list_tasks,
    "memory": memory,
}
