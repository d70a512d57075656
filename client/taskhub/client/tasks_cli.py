"""`taskhub tasks list|get|enqueue|cancel|delete|requeue|watch|wait`: a running server, from the shell.

The `tasks` group, hung under the root by `cli.root()`. Output is for people by default
(tables that fit the terminal; `--wide` for every character) and Meilisearch's JSON with
`--json`; the connection flags go before or after the command; exit codes are `cli.EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import click

from taskhub import dates, durations
from taskhub.client.cli import (
    CONTEXT,
    EXIT_CODES,
    EXIT_OK,
    EXIT_TASK_FAILED,
    SECONDS,
    WIDE,
    DateBound,
    JsonObject,
    Natural,
    client_command,
    connection_options,
    usage_error,
    width,
)
from taskhub.client.filters import DATE_FIELDS, LIST_FIELDS, TaskFilter, camel
from taskhub.client.models import Task, TaskStatus
from taskhub.client.render import (
    LiveLine,
    change_line,
    page_footer,
    requeued_line,
    status_line,
    summary_line,
    task_card,
    task_table,
    to_json,
)
from taskhub.client.sync import TaskHubClient
from taskhub.errors import TaskHubError

_FILTER_HELP = {
    "uids": "tasks with these uids (comma list, e.g. 1,2,3)",
    "index_uids": "tasks of these indexes (comma list, case-sensitive)",
    "statuses": "tasks in these statuses: enqueued, processing, succeeded, failed, canceled",
    "types": "tasks of these types, e.g. documentAdditionOrUpdate,indexCreation (or registered ones: sendEmail)",
    "canceled_by": "tasks canceled by these taskCancelation uids",
    "batch_uids": "tasks held by these batches (comma list of batch uids)",
}
FILTER_RULES = (
    "Filters: AND across flags, OR inside a comma list; `*` matches everything; an empty list"
    " matches nothing. Dates are RFC 3339 or YYYY-MM-DD (UTC midnight); bounds are exclusive."
)
_UID = Natural("a task uid")


def _filter_options() -> tuple:
    options = [
        click.option("--" + name.replace("_", "-"), name, metavar="LIST", help=_FILTER_HELP[name])
        for name in LIST_FIELDS
    ]
    for name in DATE_FIELDS:
        when, what, _ = name.split("_")
        options.append(
            click.option(
                "--" + name.replace("_", "-"), name, type=DateBound(), metavar="DATE", help=f"tasks {what} {when} DATE"
            )
        )
    return tuple(options)


@click.group(
    context_settings=CONTEXT,
    epilog=EXIT_CODES,
    short_help="list, inspect, enqueue, cancel, delete and watch tasks on a running server",
)
@connection_options()
def tasks(**connection) -> None:
    """Drive a running taskhub server over gRPC. The connection flags (--target, --api-key, --rpc-timeout,
    --json) go before or after the command: `taskhub tasks --json list` is `taskhub tasks list --json`."""


def _declare() -> None:
    filters = _filter_options()
    client_command(
        tasks,
        "list",
        _list,
        "list tasks, newest first",
        "List the tasks matching the filters, newest first. Text: a table that fits the terminal"
        " (--wide: every character) and an `N of TOTAL` line; --json: the page as GET /tasks answers"
        " it, or with --all one task per line (JSON Lines).\n\n" + FILTER_RULES,
        (
            *filters,
            click.option("--limit", type=Natural("a page size"), metavar="N", help="page size (server default 20)"),
            click.option("--from", "from_", type=_UID, metavar="UID", help="start from this uid (inclusive)"),
            click.option("--reverse", is_flag=True, help="oldest first"),
            click.option("--all", is_flag=True, help="follow `next` through every page"),
            WIDE,
        ),
    )
    client_command(
        tasks,
        "get",
        _get,
        "show one task",
        "Show one task (--json: the task object as GET /tasks/UID).",
        (click.argument("uid", type=_UID, metavar="UID"),),
    )
    client_command(
        tasks,
        "enqueue",
        _enqueue,
        "enqueue a task, or every task of a file",
        "Enqueue a task of type TYPE and print its summary (--json: {taskUid, indexUid, status, type,"
        " enqueuedAt}). Example: taskhub tasks enqueue documentAdditionOrUpdate --index-uid movies"
        " --details '{\"receivedDocuments\": 3}'. TYPE may be one registered at the server"
        " (--task-types), its details any JSON object: taskhub tasks enqueue sendEmail --details"
        ' \'{"to": "a@example.com"}\'. With --file, enqueue every line of a JSON Lines'
        ' file ({"type", "indexUid", "details", "runAt", "retry"} as POST /tasks takes them) in EnqueueTasks'
        " calls of up to 1,000, each all or none, printing a summary per task as its call succeeds.",
        (
            click.argument("type", metavar="[TYPE]", required=False),
            click.option("--index-uid", metavar="INDEX", help="the index (required for index types)"),
            click.option(
                "--details",
                type=JsonObject(),
                metavar="JSON",
                help="the details as a JSON object with Meilisearch's keys (any object for a registered type)",
            ),
            click.option(
                "--custom-metadata",
                metavar="TEXT",
                help="any string kept with the task and shown as its customMetadata",
            ),
            click.option("--file", metavar="PATH", help="a JSON Lines file of tasks instead of TYPE ('-': stdin)"),
            click.option(
                "--run-at",
                metavar="DATE",
                help="not run before this RFC 3339 date-time (2026-01-01T09:00:00Z); from a day ago to a year ahead",
            ),
            click.option(
                "--delay",
                metavar="DURATION",
                help="not run before this long from now: 500ms, 30s, 5m, 2h, 1d or seconds",
            ),
            click.option(
                "--retry",
                type=JsonObject(),
                metavar="JSON",
                help='the task\'s own retry policy, e.g. \'{"attempts": 10, "initialDelay": "30s"}\'',
            ),
        ),
    )
    client_command(
        tasks,
        "cancel",
        _cancel,
        "cancel the matching enqueued or processing tasks",
        "Enqueue a taskCancelation of the tasks matching the filters (at least one filter is"
        " required).\n\n" + FILTER_RULES,
        filters,
    )
    client_command(
        tasks,
        "delete",
        _delete,
        "delete the matching finished tasks",
        "Enqueue a taskDeletion of the finished tasks matching the filters (at least one filter is"
        " required).\n\n" + FILTER_RULES,
        filters,
    )
    client_command(
        tasks,
        "requeue",
        _requeue,
        "enqueue the matching failed or canceled tasks again",
        "Enqueue again, as new tasks, the failed or canceled tasks matching the filters (at least one"
        " filter is required; other statuses are never requeued), at most 1,000 at once. Text: one line"
        " per new task; --json: the new tasks as POST /tasks/requeue answers them.\n\n" + FILTER_RULES,
        filters,
    )
    client_command(
        tasks,
        "watch",
        _watch,
        "print each state of a task until it finishes, or every matching change",
        "With a UID: print each state of that task until it succeeds, fails or is canceled: a status"
        " line rewritten in place on a terminal, one line per change otherwise (--json: one task"
        " object per line). Without: follow every change of the tasks matching the filters, one line"
        " each (#SEQUENCE task UID (TYPE on INDEX): STATUS), until interrupted (--json: one"
        " {sequence, deleted, task} object per line). --after SEQUENCE resumes after a change seen."
        "\n\n" + FILTER_RULES,
        (
            click.argument("uid", type=_UID, metavar="[UID]", required=False),
            *filters,
            click.option(
                "--timeout", type=SECONDS, metavar="SECONDS", help="with a UID: give up (exit 5) after this long"
            ),
            click.option(
                "--after",
                type=Natural("a sequence number", 2**64),
                metavar="SEQUENCE",
                help="without a UID: resume after this change's sequence number",
            ),
        ),
    )
    client_command(
        tasks,
        "wait",
        _wait,
        "wait until a task finishes; the exit code tells how it ended",
        "Wait until a task succeeds, fails or is canceled, showing its state as it changes; --json"
        " prints only the final task object (and shows progress on stderr when that is a terminal).",
        (
            click.argument("uid", type=_UID, metavar="UID"),
            click.option("--timeout", type=SECONDS, metavar="SECONDS", help="give up (exit 5) after this long"),
        ),
    )


def _task_filter(args: argparse.Namespace) -> TaskFilter:
    given = {name: getattr(args, name) for name in (*LIST_FIELDS, *DATE_FIELDS) if getattr(args, name) is not None}
    return TaskFilter.from_query({camel(name): value for name, value in given.items()})


def _list(client: TaskHubClient, args: argparse.Namespace) -> int:
    task_filter = _task_filter(args)
    if args.all:
        tasks = client.iter_tasks(task_filter, page_size=args.limit, from_=args.from_, reverse=args.reverse)
        if args.json:
            for task in tasks:
                print(to_json(task.to_dict()))
        else:
            found = list(tasks)
            print(task_table(found, width(args.wide)) if found else "no tasks")
        return EXIT_OK
    page = client.list_tasks(task_filter, limit=args.limit, from_=args.from_, reverse=args.reverse)
    if args.json:
        print(to_json(page.to_dict()))
    else:
        if page.results:
            print(task_table(page.results, width(args.wide)))
        print(page_footer(page))
    return EXIT_OK


def _get(client: TaskHubClient, args: argparse.Namespace) -> int:
    task = client.get_task(args.uid)
    print(to_json(task.to_dict()) if args.json else task_card(task))
    return EXIT_OK


def _enqueue(client: TaskHubClient, args: argparse.Namespace) -> int:
    if (args.type is None) == (args.file is None):
        usage_error("give a TYPE or --file, one of the two")
    if args.file is not None:
        if any(
            getattr(args, name) is not None
            for name in ("index_uid", "details", "custom_metadata", "run_at", "delay", "retry")
        ):
            usage_error(
                "--index-uid, --details, --custom-metadata, --run-at, --delay and --retry go with TYPE; with --file"
                " each line carries its own"
            )
        return _enqueue_file(client, args)
    if args.run_at is not None and args.delay is not None:
        usage_error("give --run-at or --delay, not both")
    run_at = delay = None
    if args.run_at is not None:
        try:
            run_at = _run_at(args.run_at)
        except ValueError as exc:
            usage_error(f"--run-at: {exc}")
    if args.delay is not None:
        try:
            delay = timedelta(microseconds=durations.parse_duration(args.delay))
        except ValueError as exc:
            usage_error(f"--delay: {exc}")
    summary = client.enqueue(
        args.type,
        args.index_uid,
        args.details,
        custom_metadata=args.custom_metadata,
        run_at=run_at,
        delay=delay,
        retry=args.retry,
    )
    print(to_json(summary.to_dict()) if args.json else summary_line(summary))
    return EXIT_OK


def _run_at(text: str) -> datetime:
    """An RFC 3339 date-time with its time (a bare date names no time to run at), as an aware datetime."""
    try:
        if ":" not in text:
            raise ValueError
        seconds, nanos = dates.parse_bound(text)
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1_000)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"`{text}` is not an RFC 3339 date-time, such as 2026-01-01T09:00:00Z") from None


FILE_BATCH = 1_000  # the most tasks one EnqueueTasks call takes
_POSITION = re.compile(r"`tasks\[(\d+)\]`: ")


def _enqueue_file(client: TaskHubClient, args: argparse.Namespace) -> int:
    """Every task of a JSON Lines file, in calls of up to `FILE_BATCH`; an error names its line."""
    name = "stdin" if args.file == "-" else args.file
    try:
        # Bytes, decoded line by line: a decoding error then names its line, not a buffer's.
        source = contextlib.nullcontext(sys.stdin.buffer) if args.file == "-" else open(args.file, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        usage_error(f"cannot read {name}: {exc.strerror or exc}")
    done = 0
    with source as lines:
        for numbers, tasks in _task_batches(lines, name):
            try:
                summaries = client.enqueue_tasks(tasks)
            except TaskHubError as error:
                before = f"the {done:,} tasks before it were."
                said = error.message if error.message.endswith(".") else error.message + "."
                # A refusal names the task's position in its call; the user wants the file's line.
                if found := _POSITION.match(error.message):
                    raise TaskHubError(
                        error.code,
                        f"{name}:{numbers[int(found[1])]}: {said[found.end() :]}"
                        f" Nothing from line {numbers[0]} on was enqueued; {before}",
                    ) from None
                if error.type == "invalid_request" or error.code == "no_space_left_on_device":
                    raise TaskHubError(
                        error.code,
                        f"{name}:{numbers[0]}-{numbers[-1]}: {said} Nothing"
                        f" from line {numbers[0]} on was enqueued; {before}",
                    ) from None
                # Unreachable, timed out, internal: the call may have gone in with its answer lost.
                raise TaskHubError(
                    error.code,
                    f"{name}:{numbers[0]}-{numbers[-1]}: {said} These lines"
                    f" may or may not have been enqueued (`taskhub tasks list` tells);"
                    f" the {done:,} tasks before line {numbers[0]} were.",
                ) from None
            for summary in summaries:
                print(to_json(summary.to_dict()) if args.json else summary_line(summary))
            done += len(summaries)
    return EXIT_OK


def _task_batches(lines: Iterable[bytes], name: str) -> Iterator[tuple[list[int], list[tuple]]]:
    """(line numbers, tasks) for each run of up to `FILE_BATCH` tasks; blank lines are skipped."""
    numbers: list[int] = []
    tasks: list[tuple] = []
    for number, raw in enumerate(lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise TaskHubError("bad_request", f"{name}:{number}: not UTF-8 text.") from None
        if not text.strip():
            continue
        try:
            task = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskHubError("bad_request", f"{name}:{number}: not valid JSON: {exc}.") from None
        if not (
            isinstance(task, dict)
            and task.keys() <= {"type", "indexUid", "details", "runAt", "retry"}
            and isinstance(task.get("type"), str)
            and isinstance(task.get("indexUid"), (str, type(None)))
            and isinstance(task.get("details"), (dict, type(None)))
            and isinstance(task.get("runAt"), (str, type(None)))
            and isinstance(task.get("retry"), (dict, type(None)))
        ):
            raise TaskHubError(
                "bad_request",
                f"{name}:{number}: each line is a JSON object with a string `type`,"
                " and optionally a string `indexUid`, an object `details`, a string `runAt` and an object"
                " `retry`, as POST /tasks takes it.",
            )
        run_at = None
        if task.get("runAt") is not None:
            try:
                run_at = _run_at(task["runAt"])
            except ValueError as exc:
                raise TaskHubError("invalid_task_run_at", f"{name}:{number}: `runAt`: {exc}.") from None
        numbers.append(number)
        tasks.append((task["type"], task.get("indexUid"), task.get("details"), None, run_at, task.get("retry")))
        if len(tasks) == FILE_BATCH:
            yield numbers, tasks
            numbers, tasks = [], []
    if tasks:
        yield numbers, tasks


def _cancel(client: TaskHubClient, args: argparse.Namespace) -> int:
    summary = client.cancel_tasks(_task_filter(args))
    print(to_json(summary.to_dict()) if args.json else summary_line(summary))
    return EXIT_OK


def _delete(client: TaskHubClient, args: argparse.Namespace) -> int:
    summary = client.delete_tasks(_task_filter(args))
    print(to_json(summary.to_dict()) if args.json else summary_line(summary))
    return EXIT_OK


def _requeue(client: TaskHubClient, args: argparse.Namespace) -> int:
    new = client.requeue_tasks(_task_filter(args))
    if args.json:
        print(to_json({"results": [task.to_dict() for task in new]}))
    else:
        print("\n".join(requeued_line(task) for task in new) or "no failed or canceled task matches")
    return EXIT_OK


def _outcome(task: Task | None) -> int:
    return EXIT_OK if task is not None and task.status == TaskStatus.SUCCEEDED else EXIT_TASK_FAILED


def _follow(client: TaskHubClient, args: argparse.Namespace, live: LiveLine | None) -> Iterator[Task]:
    try:
        for task in client.watch_task(args.uid, timeout=args.timeout):
            if live is not None:
                live.show(status_line(task))
            yield task
    finally:
        if live is not None:
            live.end()  # before any error message, so it does not land on the status line


def _watch(client: TaskHubClient, args: argparse.Namespace) -> int:
    filters = [name for name in (*LIST_FIELDS, *DATE_FIELDS) if getattr(args, name) is not None]
    if args.uid is None:
        if args.timeout is not None:
            usage_error("--timeout needs a UID; without one, watch runs until interrupted")
        return _watch_changes(client, args)
    if args.after is not None:
        filters.append("after")
    if filters:
        flags = ", ".join("--" + name.replace("_", "-") for name in filters)
        usage_error(f"watch takes a UID or filters, not both ({flags} with UID {args.uid})")
    last = None
    for last in _follow(client, args, None if args.json else LiveLine(sys.stdout)):
        if args.json:
            print(to_json(last.to_dict()), flush=True)
    return _outcome(last)


def _watch_changes(client: TaskHubClient, args: argparse.Namespace) -> int:
    """Every matching change, one line each, until interrupted (the runner answers 130 then)."""
    for change in client.watch_tasks(_task_filter(args), after=args.after):
        print(to_json(change.to_dict()) if args.json else change_line(change), flush=True)
    return EXIT_OK


def _wait(client: TaskHubClient, args: argparse.Namespace) -> int:
    # With --json, stdout carries only the final task; progress is for a person at a terminal.
    live = LiveLine(sys.stdout) if not args.json else LiveLine(sys.stderr) if sys.stderr.isatty() else None
    last = None
    for last in _follow(client, args, live):  # noqa: B007 - the last one is read after the loop
        pass
    if args.json:
        print(to_json(last.to_dict()))
    return _outcome(last)


_declare()
