"""`taskhub worker MODULE`: runs a `Worker` with the handlers a module declares.

MODULE is a dotted module (`myapp.handlers`) or a file (`handlers.py`); its
`HANDLERS` dict (or the attribute named after a colon: `myapp.handlers:TABLE`)
maps task types to handler functions.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pathlib
import sys

import click

from taskhub.client import logs, tracing
from taskhub.client.cli import CONTEXT, connection_options
from taskhub.client.worker import Worker
from taskhub.errors import TaskHubError


def load_handlers(spec: str) -> dict:
    name, _, attribute = spec.partition(":")
    if name.endswith(".py") or os.sep in name:
        path = pathlib.Path(name).resolve()
        if not path.exists():
            raise SystemExit(f"taskhub worker: no such file: {name}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.path.insert(0, str(path.parent))  # so the handlers' own imports resolve
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(name)
    handlers = getattr(module, attribute or "HANDLERS", None)
    if not isinstance(handlers, dict) or not handlers:
        raise SystemExit(f"taskhub worker: {spec} has no `{attribute or 'HANDLERS'}` dict of task type -> handler")
    return handlers


@click.command(context_settings=CONTEXT)
@click.argument("module", metavar="MODULE")
@connection_options(("target", "api_key", "tls_ca"))
@click.option("--index-uids", metavar="LIST", help="only these indexes, comma-separated")
@click.option("--max-tasks", type=int, help="the most tasks in one batch")
@click.option(
    "--concurrency", type=int, default=1, show_default=True, help="batches run at once (on different indexes)"
)
@click.option("--lease-seconds", type=float, default=30.0, show_default=True, help="lease duration; renewed at a third")
@click.option("--poll-seconds", type=float, default=10.0, show_default=True, help="how long one lease request waits")
@click.option(
    "--grace-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="on SIGTERM, how long the current batch may take before it is released",
)
@click.option("--log-level", envvar="TASKHUB_LOG_LEVEL", default="INFO", show_default=True, show_envvar=True)
@click.option(
    "--log-format",
    envvar="TASKHUB_LOG_FORMAT",
    type=click.Choice(logs.FORMATS, case_sensitive=False),
    default="text",
    show_default=True,
    show_envvar=True,
    help="`text`, or `json`: an object a line",
)
def worker(**params) -> int:
    """Run a worker with the handlers of MODULE (a dotted module or a .py file, optionally :ATTRIBUTE).

    It leases tasks from a running taskhub server and runs them with the handlers that MODULE's
    HANDLERS dict maps task types to. SIGTERM/SIGINT finish the current batch (within --grace-seconds)
    or release it. The API key needs the workers.* action (and tasks.get, for the warning about waiting
    tasks of types it has no handler for). OTEL_TRACES_EXPORTER turns tracing on (docs/tracing-and-logs.md).
    """
    return _run(argparse.Namespace(**params))


def _run(args: argparse.Namespace) -> int:
    logs.start_logging(args.log_level, args.log_format)
    try:
        tracing.start("taskhub-worker")
        worker = Worker(
            args.target,
            load_handlers(args.module),
            api_key=args.api_key,
            tls_ca=args.tls_ca,
            index_uids=args.index_uids.split(",") if args.index_uids else None,
            max_tasks=args.max_tasks,
            concurrency=args.concurrency,
            lease_seconds=args.lease_seconds,
            poll_seconds=args.poll_seconds,
            grace_seconds=args.grace_seconds,
        )
    except (OSError, ValueError) as error:  # an unreadable --tls-ca, an exporter not installed
        print(f"taskhub worker: {error}", file=sys.stderr)
        return 2
    try:
        worker.run()
    except TaskHubError as error:
        print(f"taskhub worker: {error.code}: {error.message}", file=sys.stderr)
        return 4
    return 0
