"""The `taskhub` command: `serve` runs the service, `gateway` the JSON gateway alone.

Lives in the server package because `serve` needs the server; the client-side
commands (`tasks`, `keys`, `worker`) are added from `taskhub.client` and never
import the server.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine

from taskhub.server import config as config_module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskhub", description="A task queue with Meilisearch's task API.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the service on its embedded SQLite store",
                                description="Run the gRPC server and the JSON gateway over one SQLite file.")
    config_module.add_arguments(serve)
    serve.set_defaults(run=_serve)
    gateway = commands.add_parser("gateway", help="run the JSON gateway alone, in front of a gRPC server",
                                  description="Run the JSON/HTTP gateway in front of a running taskhub gRPC server.")
    target = os.environ.get("TASKHUB_GRPC_TARGET", "127.0.0.1:50051")
    gateway.add_argument("--grpc-target", default=target,
                         help=f"host:port of the taskhub gRPC server (env TASKHUB_GRPC_TARGET); default {target}")
    ca = os.environ.get("TASKHUB_TLS_CA")
    gateway.add_argument("--tls-ca", metavar="PATH", default=ca,
                         help="call the gRPC server over TLS, verifying it with this CA file (PEM) (env TASKHUB_TLS_CA)")
    config_module.add_arguments(gateway, names=("http_listen", "http_allowed_hosts", "http_allowed_origins",
                                                "grace_seconds", "event_loop", "log_level",
                                                "http_payload_size_limit", "tls_cert", "tls_key",
                                                "max_watchers_per_client"))
    gateway.set_defaults(run=_gateway)
    from taskhub.client import cli as client_cli
    from taskhub.client import worker_cli
    client_cli.add_commands(commands)
    worker_cli.add_command(commands)
    return parser


def run_loop(main: Coroutine, choice: str) -> object:
    """Runs `main` to the end on the chosen event loop and answers its result: `auto` is uvloop where installed.

    uvloop runs the loop itself (callbacks, futures, timers) in C: with gRPC's per-call
    tasks and wake-ups on it, GetTask's server CPU fell ~30 us a call and end-to-end
    throughput rose ~15% (bench/README.md).
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


# The collector's youngest generation is collected after this many new objects (CPython's default
# is 700). With thousands of watch streams open, objects that live a few milliseconds (a call, a
# batch of changes) outlive the default young collections and reach the oldest generation, whose
# full passes then scan every stream's objects and pause the whole server (bench/README.md, fan-out).
YOUNG_GENERATION = 7_000


def _serve(args: argparse.Namespace) -> int:
    import gc

    from taskhub.server import app

    gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
    config = config_module.from_namespace(args)
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_loop(app.serve(config), config.event_loop)
    except (OSError, ValueError) as exc:
        print(f"taskhub: {exc}", file=sys.stderr)
        return 1
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from taskhub.gateway import serving

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        payload_limit = config_module.parse_size(args.http_payload_size_limit)
        run_loop(serving.serve_gateway(args.grpc_target, args.http_listen, grace=args.grace_seconds,
                                       allowed_hosts=args.http_allowed_hosts,
                                       allowed_origins=args.http_allowed_origins,
                                       payload_limit=payload_limit,
                                       tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                                       max_watchers_per_client=args.max_watchers_per_client),
                 args.event_loop)
    except (OSError, ValueError) as exc:
        print(f"taskhub: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
