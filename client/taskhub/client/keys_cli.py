"""`taskhub keys list|create|get|update|delete`: API keys on a running server, from the shell.

The `keys` group sits beside `tasks` under the root (`cli.root()`), with the same
connection flags (before or after the command), `--json` output (Meilisearch's key
object and `GET /keys` page) and exit codes. Every keys command needs the master key.
"""

from __future__ import annotations

import argparse

import click

from taskhub.client.cli import CONTEXT, EXIT_CODES, EXIT_OK, WIDE, Natural, client_command, connection_options, width
from taskhub.client.filters import split_list
from taskhub.client.keys import ApiKey, KeyPage
from taskhub.client.render import card, short_time, table, to_json
from taskhub.client.sync import TaskHubClient
from taskhub.errors import TaskHubError


class CommaList(click.ParamType):
    name = "list"

    def convert(self, value, param, ctx) -> list[str]:
        items = value if isinstance(value, list) else split_list(value)
        if not items:
            self.fail("give at least one, as a comma list", param, ctx)
        return items


@click.group(
    context_settings=CONTEXT,
    epilog=EXIT_CODES,
    short_help="create, list, inspect, rename and delete API keys (with the master key)",
)
@connection_options()
def keys(**connection) -> None:
    """Manage the API keys of a running taskhub server over gRPC; every command needs the master key
    (--api-key or TASKHUB_API_KEY). The connection flags go before or after the command."""


def _declare() -> None:
    count = Natural("a number of keys")
    client_command(
        keys,
        "list",
        _list,
        "list API keys, newest first",
        "List API keys, newest first: a table that fits the terminal (--wide: every character) and an"
        " `N of TOTAL` line (--json: the page as GET /keys answers it).",
        (
            click.option("--offset", type=count, default=0, metavar="N", help="keys to skip (default 0)"),
            click.option("--limit", type=count, metavar="N", help="page size (server default 20)"),
            WIDE,
        ),
    )
    client_command(
        keys,
        "create",
        _create,
        "create an API key",
        "Create an API key and print it with its secret, the `key` field (--json: the key object as"
        " POST /keys answers it). Example: taskhub keys create --actions tasks.get,tasks.cancel"
        " --indexes movies,books_* --expires-at 2042-04-02T00:42:42Z --name ci",
        (
            click.option(
                "--actions",
                type=CommaList(),
                required=True,
                metavar="LIST",
                help="what it may do: tasks.get, tasks.enqueue, tasks.cancel, tasks.delete, tasks.requeue, tasks.*,"
                " dumps.create, dumps.*, snapshots.create, snapshots.*, version, workers.*, webhooks.get,"
                " webhooks.create, webhooks.update, webhooks.delete, webhooks.*, * (comma list)",
            ),
            click.option(
                "--indexes",
                type=CommaList(),
                required=True,
                metavar="LIST",
                help="where: index uids, prefix patterns such as movies*, or * (comma list)",
            ),
            click.option(
                "--expires-at",
                metavar="DATE",
                help="when it stops working: RFC 3339 or YYYY-MM-DD, UTC unless an offset is given (default: never)",
            ),
            click.option("--name", help="a human-readable name"),
            click.option("--description", help="what the key is for"),
            click.option("--uid", metavar="UUID", help="the uid to give it (default: a random UUID)"),
        ),
    )
    key = click.argument("uid_or_key", metavar="UID_OR_KEY")
    client_command(
        keys,
        "get",
        _get,
        "show one API key",
        "Show one API key, found by its uid or by the key itself (--json: the key object as"
        " GET /keys/UID_OR_KEY answers it).",
        (key,),
    )
    client_command(
        keys,
        "update",
        _update,
        "rename or redescribe an API key",
        "Change an API key's name or description; what it may do never changes (--json: the key object).",
        (
            key,
            click.option("--name", help="the new name"),
            click.option("--description", help="the new description"),
            click.option(
                "--clear",
                type=click.Choice(["name", "description"]),
                multiple=True,
                help="set this field to null (repeatable)",
            ),
        ),
    )
    client_command(keys, "delete", _delete, "delete an API key", "Delete an API key; it stops working at once.", (key,))


def _print(key: ApiKey, args: argparse.Namespace) -> int:
    print(to_json(key.to_dict()) if args.json else card(key.to_dict()))
    return EXIT_OK


def key_table(page: KeyPage, width: int | None = None) -> str:
    """Fitted to `width` (names, actions and indexes cut first) unless it is None."""

    def expires(key: ApiKey) -> str:
        text = key.to_dict()["expiresAt"]
        return "never" if text is None else text if width is None else short_time(text)

    rows = [[k.uid, k.name or "-", ",".join(k.actions), ",".join(k.indexes), expires(k)] for k in page.results]
    return table(["UID", "NAME", "ACTIONS", "INDEXES", "EXPIRES AT"], rows, width=width, flexible=(1, 2, 3))


def _list(client: TaskHubClient, args: argparse.Namespace) -> int:
    page = client.list_keys(offset=args.offset, limit=args.limit)
    if args.json:
        print(to_json(page.to_dict()))
        return EXIT_OK
    if page.results:
        print(key_table(page, width(args.wide)))
    footer = f"{len(page.results)} of {page.total} keys"
    if page.offset + len(page.results) < page.total and page.results:
        footer += f"; next page: --offset {page.offset + len(page.results)}"
    print(footer)
    return EXIT_OK


def _create(client: TaskHubClient, args: argparse.Namespace) -> int:
    return _print(
        client.create_key(
            args.actions,
            args.indexes,
            name=args.name,
            description=args.description,
            expires_at=args.expires_at,
            uid=args.uid,
        ),
        args,
    )


def _get(client: TaskHubClient, args: argparse.Namespace) -> int:
    return _print(client.get_key(args.uid_or_key), args)


def _update(client: TaskHubClient, args: argparse.Namespace) -> int:
    if args.name is None and args.description is None and not args.clear:
        raise TaskHubError("bad_request", "Nothing to change: give --name, --description or --clear.")
    return _print(
        client.update_key(args.uid_or_key, name=args.name, description=args.description, clear=list(args.clear)), args
    )


def _delete(client: TaskHubClient, args: argparse.Namespace) -> int:
    client.delete_key(args.uid_or_key)
    if not args.json:  # DELETE /keys answers 204 with no body: --json prints nothing either
        print(f"deleted key {args.uid_or_key}")
    return EXIT_OK


_declare()
