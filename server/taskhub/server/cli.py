"""The `taskhub` command: `serve` runs the service, `gateway` the JSON gateway alone.

The root and the client-side commands (`tasks`, `keys`, `worker`, `completion`, `--version`)
come from `taskhub.client.cli`, which never imports the server; this module adds the two
server commands, whose flags are generated from `config.Config` with `TASKHUB_*` env defaults.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import fields

import click

from taskhub.client import cli as client_cli, logs, tracing
from taskhub.server import config as config_module
from taskhub.server.config import Config

_KINDS = {"bool": bool, "float": float, "int": int}


# The collector's youngest generation is collected after this many new objects (CPython's default
# is 700). With thousands of watch streams open, objects that live a few milliseconds (a call, a
# batch of changes) outlive the default young collections and reach the oldest generation, whose
# full passes then scan every stream's objects and pause the whole server (bench/README.md, fan-out).
YOUNG_GENERATION = 7_000


def config_options(names: tuple[str, ...] | None = None) -> Callable:
    """A flag for each of Config's fields in `names` (all by default): `--db`, env TASKHUB_DB, default Config.db."""

    def decorate(command):
        for field in reversed(fields(Config)):
            if names is not None and field.name not in names:
                continue
            kind = _KINDS.get(field.type, str)
            command = click.option(
                "--" + field.name.replace("_", "-"),
                field.name,
                is_flag=kind is bool,
                type=kind,
                default=field.default,
                envvar=config_module.env_name(field.name),
                show_envvar=True,
                show_default=field.default not in (None, "") and kind is not bool,
                help=config_module.HELP[field.name],
            )(command)
        return command

    return decorate


def start_logging(config: Config) -> None:
    """Logs at --log-level in --log-format to stderr; a bad value is a usage error naming the flag."""
    wrong = logs.check(config.log_level, config.log_format)
    if wrong is not None:
        flag, _, why = wrong.partition(": ")
        raise click.BadParameter(why, param_hint=flag)
    logs.start_logging(config.log_level, config.log_format)


@click.command(context_settings=client_cli.CONTEXT)
@config_options()
def serve(**params) -> int:
    """Run the gRPC server and the JSON gateway over one SQLite file."""
    import gc

    from taskhub.server import app
    from taskhub.server.storage.contract import StorageUnavailable
    from taskhub.server.storage.postgres.connection import url_password

    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
    config = Config(**params)
    start_logging(config)
    if url_password(config.db) is not None and on_command_line("db"):
        logging.getLogger("taskhub").warning(
            "the --db URL carries a password, which `ps` and the shell's history show to others: leave it out of"
            " the URL and give it by --db-password-file (TASKHUB_DB_PASSWORD_FILE), PGPASSWORD, PGPASSFILE or"
            " ~/.pgpass, or give the URL by TASKHUB_DB"
        )
    try:
        tracing.start("taskhub", server=True)
        run_loop(app.serve(config), config.event_loop)
    except (OSError, ValueError) as exc:
        print(f"taskhub: {exc}", file=sys.stderr)
        return 1
    except StorageUnavailable as exc:  # the database cannot be reached at start: the URL in it is redacted
        print(f"taskhub: {exc.detail}", file=sys.stderr)
        return 1
    return 0


def on_command_line(name: str) -> bool:
    """Whether the running command's parameter `name` was given as a flag (rather than by env or default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is click.core.ParameterSource.COMMANDLINE


@click.command(context_settings=client_cli.CONTEXT)
@click.option(
    "--grpc-target",
    metavar="HOST:PORT",
    type=client_cli.TARGET,
    default="127.0.0.1:50051",
    envvar="TASKHUB_GRPC_TARGET",
    show_envvar=True,
    show_default=True,
    help="the taskhub gRPC server, or several replicas: HOST:PORT,HOST:PORT (or gRPC's ipv4:..., dns:///NAME:PORT)",
)
@client_cli.connection_options(("tls_ca",))
@config_options(
    (
        "http_listen",
        "http_allowed_hosts",
        "http_allowed_origins",
        "http_payload_size_limit",
        "grace_seconds",
        "event_loop",
        "log_level",
        "log_format",
        "tls_cert",
        "tls_key",
        "max_watchers_per_client",
    )
)
def gateway(grpc_target: str, tls_ca: str | None, **settings) -> int:
    """Run the JSON/HTTP gateway alone, in front of a running taskhub gRPC server."""
    from taskhub.gateway import serving

    config = Config(**settings)
    start_logging(config)
    try:
        tracing.start("taskhub-gateway")
        run_loop(
            serving.serve_gateway(
                grpc_target,
                config.http_listen,
                grace=config.grace_seconds,
                allowed_hosts=config.http_allowed_hosts,
                allowed_origins=config.http_allowed_origins,
                payload_limit=config_module.parse_size(config.http_payload_size_limit),
                tls_ca=tls_ca,
                tls_cert=config.tls_cert,
                tls_key=config.tls_key,
                max_watchers_per_client=config.max_watchers_per_client,
            ),
            config.event_loop,
        )
    except (OSError, ValueError) as exc:
        print(f"taskhub: {exc}", file=sys.stderr)
        return 1
    return 0


def build() -> click.Group:
    """The whole `taskhub` command: the client's root with `serve` and `gateway` added."""
    root = client_cli.root()
    root.add_command(serve)
    root.add_command(gateway)
    return root


def run_loop(main: Coroutine, choice: str) -> object:
    """Runs `main` to the end on the chosen event loop and answers its result: `auto` is uvloop where installed.

    uvloop runs the loop itself (callbacks, futures, timers) in C: with gRPC's per-call
    tasks and wake-ups on it, each call costs the loop less, so the server answers more
    calls a second (bench/README.md, Defaults chosen by measurement).
    """
    if choice not in ("auto", "uvloop", "asyncio"):
        main.close()
        raise ValueError(f"--event-loop is `auto`, `uvloop` or `asyncio`, not `{choice}`")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                main.close()
                raise ValueError("--event-loop uvloop: uvloop is not installed (pip install uvloop)") from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def main(argv: list[str] | None = None) -> int:
    return client_cli.run(build(), argv)


if __name__ == "__main__":
    sys.exit(main())
