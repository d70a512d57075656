"""The `taskhub` command's root, and what every client command shares: connection flags, errors, exit codes.

`root()` builds the click group (`--version`, `completion`, and the client commands `tasks`,
`keys`, `worker` and `version`); the server package adds `serve` and `gateway` to it when it is installed
(taskhub.server.cli), so the client commands never import the server. `main()` runs the client
commands alone: `python -m taskhub.client.cli tasks ...`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import sys
from collections.abc import Callable

import click
from click.core import ParameterSource
from click.shell_completion import get_completion_class

from taskhub import channels
from taskhub.client.calls import DEFAULT_TARGET, DEFAULT_TIMEOUT, TaskTimeoutError
from taskhub.client.render import to_json
from taskhub.client.sync import TaskHubClient
from taskhub.dates import parse_bound
from taskhub.errors import TaskHubError

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_ERROR = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT

# `\b` keeps click from rewrapping the table.
EXIT_CODES = """\
\b
Exit codes:
  0  success (for watch and wait: the task succeeded)
  1  watch/wait: the task failed or was canceled
  2  usage error: bad flags, or a request the server refused as invalid
  3  task, batch, API key or webhook not found
  4  any other error: server unavailable, API key refused, internal error
  5  watch/wait: --timeout elapsed before the task finished
  130  interrupted (Ctrl-C; how `watch` without a UID ends)
"""

CONTEXT = {"help_option_names": ["-h", "--help"]}
Command = Callable[[TaskHubClient, argparse.Namespace], int]


# -- values of flags -------------------------------------------------------------


class Natural(click.ParamType):
    """A non-negative integer below `limit`, named in errors as what it is (`a task uid`)."""

    name = "integer"

    def __init__(self, what: str, limit: int = 2**32) -> None:
        self.what, self.limit = what, limit

    def convert(self, value, param, ctx) -> int:
        text = str(value)
        if not (text.isascii() and text.isdigit()) or int(text) >= self.limit:
            self.fail(f"`{text}` is not {self.what} (a non-negative integer)", param, ctx)
        return int(text)


class Seconds(click.ParamType):
    name = "seconds"

    def convert(self, value, param, ctx) -> float:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1
        if seconds <= 0:
            self.fail(f"`{value}` is not a positive number of seconds", param, ctx)
        return seconds


class JsonObject(click.ParamType):
    name = "json"

    def convert(self, value, param, ctx) -> dict:
        if isinstance(value, dict):
            return value
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON: {exc}", param, ctx)
        if not isinstance(parsed, dict):
            self.fail("must be a JSON object, e.g. '{\"receivedDocuments\": 3}'", param, ctx)
        return parsed


class DateBound(click.ParamType):
    """A date bound, checked by the parser the gateway uses; the text goes on as given."""

    name = "date"

    def convert(self, value, param, ctx) -> str:
        try:
            parse_bound(value)
        except ValueError:
            self.fail(
                f"`{value}` is not a date: give RFC 3339 (2024-01-31T10:00:00Z, a space also works"
                " for the T) or YYYY-MM-DD",
                param,
                ctx,
            )
        return value


class Target(click.ParamType):
    """One server or several replicas (`HOST:PORT,HOST:PORT`, or gRPC's own forms), checked as channels take it."""

    name = "target"

    def convert(self, value, param, ctx) -> str:
        try:
            channels.split(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        return value


SECONDS = Seconds()
TARGET = Target()


# -- connection flags: one place, taken before or after the subcommand -----------

CONNECTION = {
    "target": dict(
        metavar="HOST:PORT",
        type=TARGET,
        envvar="TASKHUB_TARGET",
        default=DEFAULT_TARGET,
        show_default=True,
        help="the gRPC server, or several replicas: HOST:PORT,HOST:PORT (or gRPC's ipv4:..., dns:///NAME:PORT)",
    ),
    "api_key": dict(metavar="KEY", envvar="TASKHUB_API_KEY", help="sent as `authorization: Bearer KEY`"),
    "tls_ca": dict(
        metavar="PATH",
        envvar="TASKHUB_TLS_CA",
        help="call the server over TLS, verifying its certificate with this CA file (PEM)",
    ),
    "rpc_timeout": dict(
        metavar="SECONDS",
        type=SECONDS,
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="deadline of each call to the server",
    ),
    "json": dict(
        is_flag=True, help="print Meilisearch's JSON shapes instead of text (errors go to stderr as JSON too)"
    ),
}


def connection_options(names: tuple[str, ...] = tuple(CONNECTION)) -> Callable:
    """Adds the connection flags to a group and to each of its commands (`tasks --json list` = `tasks list --json`)."""

    def decorate(command):
        for name in reversed(names):
            command = click.option("--" + name.replace("_", "-"), name, show_envvar=True, **CONNECTION[name])(command)
        return command

    return decorate


def connection(ctx: click.Context) -> dict:
    """The connection flags' values: given on the command, else on a group above it, else env or default."""
    values = {}
    for name in CONNECTION:
        if name not in ctx.params:
            continue
        values[name] = ctx.params[name]
        here = ctx
        while here is not None and here.get_parameter_source(name) is not ParameterSource.COMMANDLINE:
            here = here.parent
        if here is not None:
            values[name] = here.params[name]
    return values


# Tables fit the terminal unless this is given; `list` of tasks and of keys take it.
WIDE = click.option(
    "--wide", is_flag=True, envvar="TASKHUB_WIDE", show_envvar=True, help="the full table, however wide: nothing cut"
)


def usage_error(message: str) -> None:
    raise click.UsageError(message, click.get_current_context(silent=True))


def width(wide: bool) -> int | None:
    """How wide tables may be: the terminal's columns (COLUMNS, else 80 off a terminal), or unbounded."""
    return None if wide else shutil.get_terminal_size().columns


# -- running -----------------------------------------------------------------------


def exit_code(error: TaskHubError) -> int:
    if isinstance(error, TaskTimeoutError):
        return EXIT_TIMEOUT
    if error.code in ("task_not_found", "batch_not_found", "api_key_not_found", "webhook_not_found"):
        return EXIT_NOT_FOUND
    return EXIT_USAGE if error.type == "invalid_request" else EXIT_ERROR


_PARAMETER = re.compile(r"parameter `([a-z][A-Za-z]*)(?:\[(\d+)\])?`")


def in_cli_words(error: TaskHubError, target: str) -> str:
    """The error as a person at the shell reads it: flags and variables, not HTTP parameters and headers."""
    if error.code == "unavailable":
        # gRPC's own text names neither the server nor what to check.
        return f"Cannot reach a taskhub server at {target} (--target or TASKHUB_TARGET): {error.message}"
    if error.code == "missing_authorization_header":
        return "The server requires an API key: give --api-key KEY or set TASKHUB_API_KEY."
    if error.code == "missing_master_key":
        return (
            "The server runs without a master key, and API keys need one: start it with --master-key"
            " (or TASKHUB_MASTER_KEY)."
        )
    if error.code == "invalid_api_key":
        return "The API key (--api-key or TASKHUB_API_KEY) is invalid, or not allowed this action on these indexes."

    def flag(match: re.Match) -> str:
        name = "--" + re.sub(r"[A-Z]", lambda m: "-" + m[0].lower(), match[1])
        return name + (f" (item {int(match[2]) + 1})" if match[2] is not None else "")

    return _PARAMETER.sub(flag, error.message)


def runner(run: Command) -> Callable[[argparse.Namespace], int]:
    """Runs a command with a client from the connection flags; errors become a message and an exit code."""

    def runner(args: argparse.Namespace) -> int:
        try:
            with TaskHubClient(
                args.target, api_key=args.api_key, timeout=args.rpc_timeout, tls_ca=args.tls_ca
            ) as client:
                return run(client, args)
        except TaskHubError as error:
            code = exit_code(error)
            if args.json:  # Meilisearch's error object, for scripts; `unavailable` still names the target
                if error.code == "unavailable":
                    error = TaskHubError(error.code, in_cli_words(error, args.target))
                print(to_json(error.to_dict()), file=sys.stderr)
            else:
                print(f"taskhub: {in_cli_words(error, args.target)} ({error.code})", file=sys.stderr)
            return code
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


def client_command(
    group: click.Group, name: str, run: Command, help: str, description: str, options: tuple[Callable, ...] = ()
) -> click.Command:
    """Declares `group name` running `run(client, args)`; args holds its `options` and the connection flags."""

    @click.pass_context
    def command(ctx: click.Context, **params) -> int:
        return runner(run)(argparse.Namespace(**params | connection(ctx)))

    for option in reversed([*options, connection_options()]):  # listed in --help in this order
        command = option(command)
    return group.command(name, short_help=help, help=description, epilog=EXIT_CODES, context_settings=CONTEXT)(command)


# -- the root ----------------------------------------------------------------------


def version() -> str:
    """The installed distribution's version, whichever distribution ships the `taskhub` package."""
    for distribution in importlib.metadata.packages_distributions().get("taskhub", ["taskhub"]):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "(not installed)"


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"taskhub {version()}")
        ctx.exit(EXIT_OK)


@click.command(context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the shell completion script for SHELL.

    \b
    bash:  eval "$(taskhub completion bash)"   (in ~/.bashrc)
    zsh:   eval "$(taskhub completion zsh)"    (in ~/.zshrc)
    fish:  taskhub completion fish > ~/.config/fish/completions/taskhub.fish
    """
    complete = get_completion_class(shell)(ctx.find_root().command, {}, "taskhub", "_TASKHUB_COMPLETE")
    click.echo(complete.source())
    return EXIT_OK


def root() -> click.Group:
    """`taskhub` with the client commands; the server package adds `serve` and `gateway`."""

    @click.group(name="taskhub", context_settings=CONTEXT)
    @click.option(
        "--version",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_print_version,
        help="print the version and exit",
    )
    def taskhub() -> None:
        """A task queue with Meilisearch's task API."""

    # They build on this module.
    from taskhub.client import batches_cli, keys_cli, leases_cli, tasks_cli, version_cli, webhooks_cli, worker_cli

    for command in (
        tasks_cli.tasks,
        batches_cli.batches,
        keys_cli.keys,
        webhooks_cli.webhooks,
        worker_cli.worker,
        completion,
    ):
        taskhub.add_command(command)
    version_cli.register(taskhub)
    leases_cli.register(taskhub)
    return taskhub


def run(group: click.Group, argv: list[str] | None = None) -> int:
    """Runs `group` as `taskhub` and answers the exit code (completion requests exit from inside)."""
    try:
        code = group.main(args=argv, prog_name="taskhub", complete_var="_TASKHUB_COMPLETE", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:  # Ctrl-C while click itself was reading the command line
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """`python -m taskhub.client.cli tasks ...`: the client commands without the server package."""
    return run(root(), argv)


if __name__ == "__main__":
    sys.exit(main())
