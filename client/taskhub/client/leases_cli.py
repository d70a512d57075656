"""`taskhub leases`: which worker holds which tasks on a running server, from the shell.

A client command at the root: the leases held now, oldest first (`ListLeases`), as a table of
worker, batch, tasks, since and deadline, then `N of TOTAL leases`; with `--json`, what
GET /leases answers.
"""

from __future__ import annotations

import argparse

import click

from taskhub.client.cli import EXIT_OK, WIDE, Natural, client_command, width
from taskhub.client.operations import HeldLease
from taskhub.client.render import short_time, table, to_json
from taskhub.client.sync import TaskHubClient


def _tasks(lease: HeldLease) -> str:
    # A retried task says which attempt it is on.
    return ",".join(str(t.uid) + (f"(attempt {t.attempts + 1})" if t.attempts else "") for t in lease.tasks)


def lease_table(leases: list[HeldLease], columns: int | None) -> str:
    def when(value: str | None) -> str:
        return short_time(value) if columns is not None else str(value)

    rows = []
    for lease in leases:
        shown = lease.to_dict()
        batch = "-" if lease.batch_uid is None else str(lease.batch_uid)
        rows.append([lease.worker or "-", batch, _tasks(lease), when(shown["since"]), when(shown["deadline"])])
    headers = ["WORKER", "BATCH", "TASKS", "SINCE (UTC)", "DEADLINE (UTC)"]
    return table(headers, rows, width=columns, flexible=(0, 2))


def _leases(client: TaskHubClient, args: argparse.Namespace) -> int:
    found = client.list_leases(limit=args.limit)
    if args.json:
        print(to_json(found.to_dict()))
        return EXIT_OK
    if found.results:
        print(lease_table(found.results, width(args.wide)))
    print(f"{len(found.results)} of {found.total} leases")
    return EXIT_OK


def register(root: click.Group) -> None:
    """Adds `leases` to the `taskhub` group."""
    client_command(
        root,
        "leases",
        _leases,
        "show which workers hold which tasks",
        "Show the leases held now, oldest first: each worker's batch, its tasks (a retried one with its"
        " attempt), since when and until when unless renewed; then `N of TOTAL leases`. --json: the object"
        " GET /leases answers.",
        (
            click.option(
                "--limit", type=Natural("a number of leases"), metavar="N", help="at most N (server default 100)"
            ),
            WIDE,
        ),
    )
