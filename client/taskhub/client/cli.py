"""`taskhub tasks list|get|enqueue|cancel|delete|watch|wait`: a running server, from the shell.

`add_commands()` hangs `tasks` (and `keys`, from `keys_cli`) under the root
`taskhub` parser (server/cli.py calls it); `main()` runs the same commands alone.
Output is for people by default and Meilisearch's JSON with `--json`; exit codes
are in `EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator

from taskhub.client.calls import DEFAULT_TARGET, DEFAULT_TIMEOUT, TaskTimeoutError
from taskhub.client.filters import DATE_FIELDS, LIST_FIELDS, TaskFilter, camel
from taskhub.client.models import Task, TaskStatus
from taskhub.client.render import (
    LiveLine, change_line, page_footer, status_line, summary_line, task_card, task_table, to_json)
from taskhub.client.sync import TaskHubClient
from taskhub.errors import TaskHubError

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_ERROR = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT

EXIT_CODES = """\
exit codes:
  0  success (for watch and wait: the task succeeded)
  1  watch/wait: the task failed or was canceled
  2  usage error: bad flags, or a request the server refused as invalid
  3  task or API key not found
  4  any other error: server unavailable, API key refused, internal error
  5  watch/wait: --timeout elapsed before the task finished
  130  interrupted (Ctrl-C; how `watch` without a UID ends)
"""

_FILTER_HELP = {
    "uids": "tasks with these uids (comma list, e.g. 1,2,3)",
    "index_uids": "tasks of these indexes (comma list, case-sensitive)",
    "statuses": "tasks in these statuses: enqueued, processing, succeeded, failed, canceled",
    "types": "tasks of these types, e.g. documentAdditionOrUpdate,indexCreation",
    "canceled_by": "tasks canceled by these taskCancelation uids",
}

Command = Callable[[TaskHubClient, argparse.Namespace], int]


# -- the parser ----------------------------------------------------------------

def _natural(what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or int(text) >= 2**32:
            raise argparse.ArgumentTypeError(f"`{text}` is not {what} (a non-negative integer)")
        return int(text)
    return parse


_uid = _natural("a task uid")


def _sequence(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**64:
        raise argparse.ArgumentTypeError(f"`{text}` is not a sequence number (a non-negative integer)")
    return int(text)


def _details(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"receivedDocuments\": 3}'")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise argparse.ArgumentTypeError(f"`{text}` is not a positive number of seconds")
    return value


def connection_flags() -> argparse.ArgumentParser:
    """`--target`, `--api-key`, `--tls-ca`, `--rpc-timeout` and `--json`, shared by every client command."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection and output")
    group.add_argument("--target", metavar="HOST:PORT", default=os.environ.get("TASKHUB_TARGET", DEFAULT_TARGET),
                       help="the gRPC server (env TASKHUB_TARGET; default %(default)s)")
    group.add_argument("--api-key", metavar="KEY", default=os.environ.get("TASKHUB_API_KEY"),
                       help="sent as `authorization: Bearer KEY` (env TASKHUB_API_KEY)")
    group.add_argument("--tls-ca", metavar="PATH", default=os.environ.get("TASKHUB_TLS_CA"),
                       help="call the server over TLS, verifying its certificate with this CA file (PEM)"
                            " (env TASKHUB_TLS_CA)")
    group.add_argument("--rpc-timeout", metavar="SECONDS", type=_seconds, default=DEFAULT_TIMEOUT,
                       help="deadline of each call to the server (default %(default)s)")
    group.add_argument("--json", action="store_true",
                       help="print Meilisearch's JSON shapes instead of text (errors go to stderr as JSON too)")
    return parent


def _filter_flags() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group(
        "filters", "AND across flags, OR inside a comma list; `*` matches everything; an empty list matches"
                   " nothing. Dates are RFC 3339 or YYYY-MM-DD (UTC midnight); bounds are exclusive.")
    for name in LIST_FIELDS:
        group.add_argument("--" + name.replace("_", "-"), metavar="LIST", help=_FILTER_HELP[name])
    for name in DATE_FIELDS:
        when, what, _ = name.split("_")
        group.add_argument("--" + name.replace("_", "-"), metavar="DATE", help=f"tasks {what} {when} DATE")
    return parent


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds `tasks` and `keys` and their subcommands to the root `taskhub` parser."""
    tasks = commands.add_parser(
        "tasks", help="list, inspect, enqueue, cancel, delete and watch tasks on a running server",
        description="Drive a running taskhub server over gRPC.", epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="COMMAND")
    conn, filters = connection_flags(), _filter_flags()

    def command(name: str, run: Command, help: str, description: str, *, filtered: bool = False):
        # Raw formatting keeps the exit-code table aligned, so wrap the description here.
        parser = sub.add_parser(name, help=help, description=textwrap.fill(description, 79), epilog=EXIT_CODES,
                                parents=[conn, *([filters] if filtered else [])],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.set_defaults(run=runner(run))
        return parser

    ls = command("list", _list, "list tasks, newest first",
                 "List the tasks matching the filters, newest first. Text: a table and a `N of TOTAL` line;"
                 " --json: the page as GET /tasks answers it, or with --all one task per line (JSON Lines).",
                 filtered=True)
    ls.add_argument("--limit", type=_natural("a page size"), metavar="N", help="page size (server default 20)")
    ls.add_argument("--from", dest="from_", metavar="UID", type=_uid, help="start from this uid (inclusive)")
    ls.add_argument("--reverse", action="store_true", help="oldest first")
    ls.add_argument("--all", action="store_true", help="follow `next` through every page")

    get = command("get", _get, "show one task", "Show one task (--json: the task object as GET /tasks/UID).")
    get.add_argument("uid", type=_uid, metavar="UID", help="the task's uid")

    enqueue = command("enqueue", _enqueue, "enqueue a task, or every task of a file",
                      "Enqueue a task and print its summary (--json: {taskUid, indexUid, status, type,"
                      " enqueuedAt}). Example: taskhub tasks enqueue documentAdditionOrUpdate --index-uid movies"
                      " --details '{\"receivedDocuments\": 3}'. With --file, enqueue every line of a JSON Lines"
                      " file ({\"type\", \"indexUid\", \"details\"} as POST /tasks takes them) in EnqueueTasks"
                      " calls of up to 1,000, each all or none, printing a summary per task as its call succeeds.")
    enqueue.add_argument("type", metavar="TYPE", nargs="?", help="the task type, e.g. indexCreation, dumpCreation")
    enqueue.add_argument("--index-uid", metavar="INDEX", help="the index (required for index types)")
    enqueue.add_argument("--details", type=_details, metavar="JSON",
                         help="the details as a JSON object with Meilisearch's keys")
    enqueue.add_argument("--file", metavar="PATH", help="a JSON Lines file of tasks instead of TYPE ('-': stdin)")
    enqueue.set_defaults(usage_error=enqueue.error)

    command("cancel", _cancel, "cancel the matching enqueued or processing tasks",
            "Enqueue a taskCancelation of the tasks matching the filters (at least one filter is required).",
            filtered=True)
    command("delete", _delete, "delete the matching finished tasks",
            "Enqueue a taskDeletion of the finished tasks matching the filters (at least one filter is required).",
            filtered=True)

    watch = command("watch", _watch, "print each state of a task until it finishes, or every matching change",
                    "With a UID: print each state of that task until it succeeds, fails or is canceled: a status"
                    " line rewritten in place on a terminal, one line per change otherwise (--json: one task"
                    " object per line). Without: follow every change of the tasks matching the filters, one line"
                    " each (#SEQUENCE task UID (TYPE on INDEX): STATUS), until interrupted (--json: one"
                    " {sequence, deleted, task} object per line). --after SEQUENCE resumes after a change seen.",
                    filtered=True)
    watch.add_argument("uid", type=_uid, metavar="UID", nargs="?", help="the task's uid (omit to follow filters)")
    watch.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                       help="with a UID: give up (exit 5) after this long")
    watch.add_argument("--after", type=_sequence, metavar="SEQUENCE",
                       help="without a UID: resume after this change's sequence number")
    watch.set_defaults(usage_error=watch.error)

    wait = command("wait", _wait, "wait until a task finishes; the exit code tells how it ended",
                   "Wait until a task succeeds, fails or is canceled, showing its state as it changes; --json prints"
                   " only the final task object (and shows progress on stderr when that is a terminal).")
    wait.add_argument("uid", type=_uid, metavar="UID", help="the task's uid")
    wait.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="give up (exit 5) after this long")

    from taskhub.client import keys_cli  # imported here: keys_cli builds on this module
    keys_cli.add_commands(commands)


# -- running -------------------------------------------------------------------

def exit_code(error: TaskHubError) -> int:
    if isinstance(error, TaskTimeoutError):
        return EXIT_TIMEOUT
    if error.code in ("task_not_found", "api_key_not_found"):
        return EXIT_NOT_FOUND
    return EXIT_USAGE if error.type == "invalid_request" else EXIT_ERROR


def runner(run: Command) -> Callable[[argparse.Namespace], int]:
    """Runs a command with a client from the connection flags; errors become a message and an exit code."""
    def runner(args: argparse.Namespace) -> int:
        try:
            with TaskHubClient(args.target, api_key=args.api_key, timeout=args.rpc_timeout,
                               tls_ca=args.tls_ca) as client:
                return run(client, args)
        except TaskHubError as error:
            if error.code == "unavailable":
                # gRPC's own text names neither the server nor what to check.
                error = TaskHubError(error.code, f"Cannot reach a taskhub server at {args.target}"
                                                 f" (--target or TASKHUB_TARGET): {error.message}")
            print(to_json(error.to_dict()) if args.json else f"taskhub: {error.message} ({error.code})",
                  file=sys.stderr)
            return exit_code(error)
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            # `taskhub tasks list | head`: the reader left; say nothing more.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        except OSError as error:  # an unreadable --tls-ca
            print(f"taskhub: {error}", file=sys.stderr)
            return EXIT_USAGE
    return runner


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
            print(task_table(found) if found else "no tasks")
        return EXIT_OK
    page = client.list_tasks(task_filter, limit=args.limit, from_=args.from_, reverse=args.reverse)
    if args.json:
        print(to_json(page.to_dict()))
    else:
        if page.results:
            print(task_table(page.results))
        print(page_footer(page))
    return EXIT_OK


def _get(client: TaskHubClient, args: argparse.Namespace) -> int:
    task = client.get_task(args.uid)
    print(to_json(task.to_dict()) if args.json else task_card(task))
    return EXIT_OK


def _enqueue(client: TaskHubClient, args: argparse.Namespace) -> int:
    if (args.type is None) == (args.file is None):
        args.usage_error("give a TYPE or --file, one of the two")
    if args.file is not None:
        if args.index_uid is not None or args.details is not None:
            args.usage_error("--index-uid and --details go with TYPE; with --file each line carries its own")
        return _enqueue_file(client, args)
    summary = client.enqueue(args.type, args.index_uid, args.details)
    print(to_json(summary.to_dict()) if args.json else summary_line(summary))
    return EXIT_OK


FILE_BATCH = 1_000  # the most tasks one EnqueueTasks call takes
_POSITION = re.compile(r"`tasks\[(\d+)\]`: ")


def _enqueue_file(client: TaskHubClient, args: argparse.Namespace) -> int:
    """Every task of a JSON Lines file, in calls of up to `FILE_BATCH`; an error names its line."""
    name = "stdin" if args.file == "-" else args.file
    try:
        # Bytes, decoded line by line: a decoding error then names its line, not a buffer's.
        source = contextlib.nullcontext(sys.stdin.buffer) if args.file == "-" else open(args.file, "rb")
    except OSError as exc:
        args.usage_error(f"cannot read {name}: {exc.strerror or exc}")
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
                    raise TaskHubError(error.code, f"{name}:{numbers[int(found[1])]}: {said[found.end():]}"
                                                   f" Nothing from line {numbers[0]} on was enqueued; {before}") from None
                if error.type == "invalid_request" or error.code == "no_space_left_on_device":
                    raise TaskHubError(error.code, f"{name}:{numbers[0]}-{numbers[-1]}: {said} Nothing"
                                                   f" from line {numbers[0]} on was enqueued; {before}") from None
                # Unreachable, timed out, internal: the call may have gone in with its answer lost.
                raise TaskHubError(error.code, f"{name}:{numbers[0]}-{numbers[-1]}: {said} These lines"
                                               f" may or may not have been enqueued (`taskhub tasks list` tells);"
                                               f" the {done:,} tasks before line {numbers[0]} were.") from None
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
        if not (isinstance(task, dict) and task.keys() <= {"type", "indexUid", "details"}
                and isinstance(task.get("type"), str) and isinstance(task.get("indexUid"), (str, type(None)))
                and isinstance(task.get("details"), (dict, type(None)))):
            raise TaskHubError("bad_request", f"{name}:{number}: each line is a JSON object with a string `type`,"
                                              " and optionally a string `indexUid` and an object `details`,"
                                              " as POST /tasks takes it.")
        numbers.append(number)
        tasks.append((task["type"], task.get("indexUid"), task.get("details")))
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
            args.usage_error("--timeout needs a UID; without one, watch runs until interrupted")
        return _watch_changes(client, args)
    if args.after is not None:
        filters.append("after")
    if filters:
        flags = ", ".join("--" + name.replace("_", "-") for name in filters)
        args.usage_error(f"watch takes a UID or filters, not both ({flags} with UID {args.uid})")
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
    for last in _follow(client, args, live):
        pass
    if args.json:
        print(to_json(last.to_dict()))
    return _outcome(last)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskhub", description="Drive a running taskhub server.")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m taskhub.client.cli tasks ...`: the client commands without the server package."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
