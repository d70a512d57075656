"""`taskhub batches list|get`: the batches a running server processed, from the shell.

Same connection flags and filters as `taskhub tasks`; a batch matches a filter when it holds a task
matching it. `--json` prints what GET /batches and GET /batches/{uid} answer.
"""

from __future__ import annotations

import argparse

import click

from taskhub.client.batches import Batch, BatchPage
from taskhub.client.cli import CONTEXT, EXIT_CODES, EXIT_OK, WIDE, Natural, client_command, connection_options, width
from taskhub.client.render import card, human_duration, short_time, table, to_json
from taskhub.client.sync import TaskHubClient
from taskhub.client.tasks_cli import FILTER_RULES, _filter_options, _task_filter

_UID = Natural("a batch uid")


@click.group(context_settings=CONTEXT, epilog=EXIT_CODES, short_help="list and inspect the batches tasks ran in")
@connection_options()
def batches(**connection) -> None:
    """What each lease, or each task the server ran, processed together: Meilisearch's batches."""


def _status(batch: Batch) -> str:
    return ", ".join(f"{count} {status}" for status, count in batch.status.items())


def batch_table(found: list[Batch], columns: int | None) -> str:
    rows = [
        [
            str(b.uid),
            _status(b),
            ",".join(b.types),
            ",".join(b.index_uids) or "-",
            str(b.total_tasks),
            short_time(b.to_dict()["startedAt"]) if columns is not None else b.to_dict()["startedAt"],
            human_duration(b.duration) if b.progress is None else f"{b.percentage:.1f}%",
        ]
        for b in found
    ]
    headers = ["UID", "STATUS", "TYPES", "INDEXES", "TASKS", "STARTED (UTC)", "DURATION"]
    return table(headers, rows, width=columns, flexible=(1, 2, 3))


def _footer(page: BatchPage) -> str:
    text = f"{len(page.results)} of {page.total} batches"
    return text + (f"; next page: --from {page.next}" if page.next is not None else "")


def _list(client: TaskHubClient, args: argparse.Namespace) -> int:
    found_filter = _task_filter(args)
    if args.all:
        found = list(client.iter_batches(found_filter, page_size=args.limit, from_=args.from_, reverse=args.reverse))
        if args.json:
            for batch in found:
                print(to_json(batch.to_dict()))
        else:
            print(batch_table(found, width(args.wide)) if found else "no batches")
        return EXIT_OK
    page = client.list_batches(found_filter, limit=args.limit, from_=args.from_, reverse=args.reverse)
    if args.json:
        print(to_json(page.to_dict()))
    else:
        if page.results:
            print(batch_table(page.results, width(args.wide)))
        print(_footer(page))
    return EXIT_OK


def _get(client: TaskHubClient, args: argparse.Namespace) -> int:
    batch = client.get_batch(args.uid)
    print(to_json(batch.to_dict()) if args.json else card(batch.to_dict()))
    return EXIT_OK


client_command(
    batches,
    "list",
    _list,
    "list batches, newest first",
    "List the batches holding a task that matches the filters, newest first (`--uids` are task uids,"
    " `--batch-uids` batch uids). Text: a table and an `N of TOTAL` line; --json: the page as GET /batches"
    " answers it, or with --all one batch per line (JSON Lines).\n\n" + FILTER_RULES,
    (
        *_filter_options(),
        click.option("--limit", type=Natural("a page size"), metavar="N", help="page size (server default 20)"),
        click.option("--from", "from_", type=_UID, metavar="UID", help="start from this batch uid (inclusive)"),
        click.option("--reverse", is_flag=True, help="oldest first"),
        click.option("--all", is_flag=True, help="follow `next` through every page"),
        WIDE,
    ),
)
client_command(
    batches,
    "get",
    _get,
    "show one batch",
    "Show one batch (--json: the batch object as GET /batches/UID).",
    (click.argument("uid", type=_UID, metavar="UID"),),
)
