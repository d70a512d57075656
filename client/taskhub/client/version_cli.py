"""`taskhub version`: which taskhub a running server is, from the shell.

A client command at the root, beside `taskhub --version` (this program's own version): it asks
the server over gRPC (`GetVersion`) with the connection flags of `tasks` and `keys`, and prints
its fields one per line, or with `--json` the object `GET /version` answers, as Meilisearch's.
"""

from __future__ import annotations

import argparse

import click

from taskhub.client.cli import EXIT_OK, client_command
from taskhub.client.render import card, to_json
from taskhub.client.sync import TaskHubClient


def _version(client: TaskHubClient, args: argparse.Namespace) -> int:
    fields = client.get_version().to_dict()
    print(to_json(fields) if args.json else card(fields))
    return EXIT_OK


def register(root: click.Group) -> None:
    """Adds `version` to the `taskhub` group."""
    client_command(
        root,
        "version",
        _version,
        "show the server's version",
        "Show which taskhub the server at --target is: its package version and the git commit it runs"
        " from, `unknown` where it cannot tell (an installed wheel records no commit). --json: the object"
        " GET /version answers. `taskhub --version` prints this program's own version.",
    )
