"""`taskhub webhooks list|create|get|update|delete`: Meilisearch's webhooks on a running server, from the shell.

The `webhooks` group sits beside `keys` under the root (`cli.root()`), with the same connection flags, `--json`
output (Meilisearch's webhook object and `GET /webhooks` body) and exit codes. The API key needs the
`webhooks.*` actions.
"""

from __future__ import annotations

import argparse

import click

from taskhub.client.cli import CONTEXT, EXIT_CODES, EXIT_OK, WIDE, client_command, connection_options, width
from taskhub.client.render import card, table, to_json
from taskhub.client.sync import TaskHubClient
from taskhub.client.webhooks import UNSET, Webhook
from taskhub.errors import TaskHubError


@click.group(
    context_settings=CONTEXT,
    epilog=EXIT_CODES,
    short_help="create, list, inspect, change and delete webhooks (endpoints finished tasks are POSTed to)",
)
@connection_options()
def webhooks(**connection) -> None:
    """Manage the webhooks of a running taskhub server over gRPC: endpoints every finished task is POSTed to, as
    Meilisearch's. The connection flags go before or after the command."""


def _header(text: str) -> tuple[str, str | None]:
    """`Name: value` sets a header; `Name:` (nothing after the colon) removes it in `update`."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        raise TaskHubError("invalid_webhook_headers", f"`{text}` is not a header: give `Name: value`.")
    return name.strip(), value.strip() or None


def _declare() -> None:
    header = click.option(
        "--header",
        "headers",
        multiple=True,
        metavar="'NAME: VALUE'",
        help="a header to send with each POST (repeatable)",
    )
    secret = click.option(
        "--secret",
        help="sign each POST: X-Taskhub-Signature: sha256=<hex HMAC-SHA256 of the body as sent>",
    )
    client_command(
        webhooks,
        "list",
        _list,
        "list webhooks",
        "List webhooks by uuid, the reserved one of --task-webhook-url first (--json: the body of GET /webhooks).",
        (WIDE,),
    )
    client_command(
        webhooks,
        "create",
        _create,
        "create a webhook",
        "Register an endpoint every finished task is POSTed to, as gzipped ndjson (--json: the webhook object"
        " as POST /webhooks answers it). Example: taskhub webhooks create https://your.site/hook"
        " --header 'Authorization: Bearer a-token'",
        (click.argument("url"), header, secret),
    )
    uuid = click.argument("uuid")
    client_command(
        webhooks, "get", _get, "show one webhook", "Show one webhook (--json: as GET /webhooks/UUID).", (uuid,)
    )
    client_command(
        webhooks,
        "update",
        _update,
        "change a webhook",
        "Change a webhook's url, headers or secret (--json: the webhook object). `--header 'Name:'` removes a header.",
        (
            uuid,
            click.option("--url", help="the new url"),
            header,
            click.option("--clear-headers", is_flag=True, help="remove every header first"),
            secret,
            click.option("--no-secret", is_flag=True, help="stop signing the POSTs"),
        ),
    )
    client_command(
        webhooks, "delete", _delete, "delete a webhook", "Delete a webhook; what it was owed is dropped.", (uuid,)
    )


def _print(webhook: Webhook, args: argparse.Namespace) -> int:
    print(to_json(webhook.to_dict()) if args.json else card(webhook.to_dict()))
    return EXIT_OK


def _list(client: TaskHubClient, args: argparse.Namespace) -> int:
    found = client.list_webhooks()
    if args.json:
        print(to_json({"results": [w.to_dict() for w in found]}))
        return EXIT_OK
    rows = [[w.uuid, w.url, "yes" if w.is_editable else "no", str(len(w.headers)), str(w.dropped)] for w in found]
    if rows:
        print(table(["UUID", "URL", "EDITABLE", "HEADERS", "DROPPED"], rows, width=width(args.wide), flexible=(1,)))
    print(f"{len(found)} webhook{'' if len(found) == 1 else 's'}")
    return EXIT_OK


def _create(client: TaskHubClient, args: argparse.Namespace) -> int:
    headers = dict(_header(text) for text in args.headers)
    return _print(
        client.create_webhook(args.url, headers={k: v or "" for k, v in headers.items()}, secret=args.secret), args
    )


def _get(client: TaskHubClient, args: argparse.Namespace) -> int:
    return _print(client.get_webhook(args.uuid), args)


def _update(client: TaskHubClient, args: argparse.Namespace) -> int:
    headers = dict(_header(text) for text in args.headers)
    if args.url is None and not headers and not args.clear_headers and args.secret is None and not args.no_secret:
        raise TaskHubError(
            "bad_request", "Nothing to change: give --url, --header, --clear-headers, --secret or --no-secret."
        )
    secret = None if args.no_secret else UNSET if args.secret is None else args.secret
    return _print(
        client.update_webhook(
            args.uuid, url=args.url, headers=headers, clear_headers=args.clear_headers, secret=secret
        ),
        args,
    )


def _delete(client: TaskHubClient, args: argparse.Namespace) -> int:
    client.delete_webhook(args.uuid)
    if not args.json:  # DELETE /webhooks answers 204 with no body: --json prints nothing either
        print(f"deleted webhook {args.uuid}")
    return EXIT_OK


_declare()
