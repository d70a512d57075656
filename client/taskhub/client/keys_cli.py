"""`taskhub keys list|create|get|update|delete`: API keys on a running server, from the shell.

`cli.add_commands()` calls `add_commands()` here, so `keys` sits beside `tasks` with
the same connection flags, `--json` output (Meilisearch's key object and `GET /keys`
page) and exit codes. Every keys command needs the master key as `--api-key`.
"""

from __future__ import annotations

import argparse
import textwrap

from taskhub.client.cli import EXIT_CODES, EXIT_OK, connection_flags, runner
from taskhub.client.filters import split_list
from taskhub.client.keys import ApiKey, KeyPage
from taskhub.client.render import card, table, to_json
from taskhub.client.sync import TaskHubClient
from taskhub.errors import TaskHubError


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**32:
        raise argparse.ArgumentTypeError(f"`{text}` is not a non-negative integer")
    return int(text)


def _list_of(text: str) -> list[str]:
    items = split_list(text)
    if not items:
        raise argparse.ArgumentTypeError("give at least one, as a comma list")
    return items


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Adds `keys` and its subcommands to the root `taskhub` parser."""
    keys = commands.add_parser(
        "keys", help="create, list, inspect, rename and delete API keys (with the master key)",
        description="Manage the API keys of a running taskhub server over gRPC; every command needs the master"
                    " key (--api-key or TASKHUB_API_KEY).", epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    conn = connection_flags()

    def command(name: str, run, help: str, description: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=textwrap.fill(description, 79), epilog=EXIT_CODES,
                                parents=[conn], formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.set_defaults(run=runner(run))
        return parser

    ls = command("list", _list, "list API keys, newest first",
                 "List API keys, newest first: a table and an `N of TOTAL` line (--json: the page as GET /keys"
                 " answers it).")
    ls.add_argument("--offset", type=_count, default=0, metavar="N", help="keys to skip (default 0)")
    ls.add_argument("--limit", type=_count, metavar="N", help="page size (server default 20)")

    create = command("create", _create, "create an API key",
                     "Create an API key and print it with its secret, the `key` field (--json: the key object as"
                     " POST /keys answers it). Example: taskhub keys create --actions tasks.get,tasks.cancel"
                     " --indexes movies,books_* --expires-at 2042-04-02T00:42:42Z --name ci")
    create.add_argument("--actions", type=_list_of, required=True, metavar="LIST",
                        help="what it may do: tasks.get, tasks.enqueue, tasks.cancel, tasks.delete, tasks.*,"
                             " workers.*, * (comma list)")
    create.add_argument("--indexes", type=_list_of, required=True, metavar="LIST",
                        help="where: index uids, prefix patterns such as movies*, or * (comma list)")
    create.add_argument("--expires-at", metavar="DATE",
                        help="when it stops working: RFC 3339 or YYYY-MM-DD, UTC unless an offset is given"
                             " (default: never)")
    create.add_argument("--name", help="a human-readable name")
    create.add_argument("--description", help="what the key is for")
    create.add_argument("--uid", metavar="UUID", help="the uid to give it (default: a random UUID)")

    for name, run, help, text in (
        ("get", _get, "show one API key", "Show one API key, found by its uid or by the key itself (--json: the key"
                                          " object as GET /keys/UID_OR_KEY answers it)."),
        ("update", _update, "rename or redescribe an API key",
         "Change an API key's name or description; what it may do never changes (--json: the key object)."),
        ("delete", _delete, "delete an API key", "Delete an API key; it stops working at once."),
    ):
        parser = command(name, run, help, text)
        parser.add_argument("uid_or_key", metavar="UID_OR_KEY", help="the key's uid, or the key itself")
        if name == "update":
            parser.add_argument("--name", help="the new name")
            parser.add_argument("--description", help="the new description")
            parser.add_argument("--clear", action="append", choices=("name", "description"), default=[],
                                help="set this field to null (repeatable)")


def _print(key: ApiKey, args: argparse.Namespace) -> int:
    print(to_json(key.to_dict()) if args.json else card(key.to_dict()))
    return EXIT_OK


def key_table(page: KeyPage) -> str:
    rows = [[k.uid, k.name or "-", ",".join(k.actions), ",".join(k.indexes), k.to_dict()["expiresAt"] or "never"]
            for k in page.results]
    return table(["UID", "NAME", "ACTIONS", "INDEXES", "EXPIRES AT"], rows)


def _list(client: TaskHubClient, args: argparse.Namespace) -> int:
    page = client.list_keys(offset=args.offset, limit=args.limit)
    if args.json:
        print(to_json(page.to_dict()))
        return EXIT_OK
    if page.results:
        print(key_table(page))
    footer = f"{len(page.results)} of {page.total} keys"
    if page.offset + len(page.results) < page.total and page.results:
        footer += f"; next page: --offset {page.offset + len(page.results)}"
    print(footer)
    return EXIT_OK


def _create(client: TaskHubClient, args: argparse.Namespace) -> int:
    return _print(client.create_key(args.actions, args.indexes, name=args.name, description=args.description,
                                    expires_at=args.expires_at, uid=args.uid), args)


def _get(client: TaskHubClient, args: argparse.Namespace) -> int:
    return _print(client.get_key(args.uid_or_key), args)


def _update(client: TaskHubClient, args: argparse.Namespace) -> int:
    if args.name is None and args.description is None and not args.clear:
        raise TaskHubError("bad_request", "Nothing to change: give --name, --description or --clear.")
    return _print(client.update_key(args.uid_or_key, name=args.name, description=args.description,
                                    clear=args.clear), args)


def _delete(client: TaskHubClient, args: argparse.Namespace) -> int:
    client.delete_key(args.uid_or_key)
    if not args.json:  # DELETE /keys answers 204 with no body: --json prints nothing either
        print(f"deleted key {args.uid_or_key}")
    return EXIT_OK
