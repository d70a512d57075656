"""`taskhub worker MODULE`: runs a `Worker` with the handlers a module declares.

MODULE is a dotted module (`myapp.handlers`) or a file (`handlers.py`); its
`HANDLERS` dict (or the attribute named after a colon: `myapp.handlers:TABLE`)
maps task types to handler functions.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import pathlib
import sys

from taskhub.client.calls import DEFAULT_TARGET
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


def add_command(commands: argparse._SubParsersAction) -> None:
    """Adds `worker` to the root `taskhub` parser."""
    parser = commands.add_parser(
        "worker", help="run a worker with the handlers of a module",
        description="Lease tasks from a running taskhub server and run them with the handlers that MODULE's"
                    " HANDLERS dict maps task types to. SIGTERM/SIGINT finish the current batch (within"
                    " --grace-seconds) or release it.")
    parser.add_argument("module", metavar="MODULE", help="dotted module or .py file, optionally :ATTRIBUTE")
    parser.add_argument("--target", default=os.environ.get("TASKHUB_TARGET", DEFAULT_TARGET),
                        help="host:port of the gRPC server (env TASKHUB_TARGET)")
    parser.add_argument("--api-key", default=os.environ.get("TASKHUB_API_KEY"),
                        help="API key with the workers.* action (env TASKHUB_API_KEY)")
    parser.add_argument("--tls-ca", default=os.environ.get("TASKHUB_TLS_CA"),
                        help="call the server over TLS, verifying it with this CA file (PEM) (env TASKHUB_TLS_CA)")
    parser.add_argument("--index-uids", help="only these indexes, comma-separated")
    parser.add_argument("--max-tasks", type=int, help="the most tasks in one batch")
    parser.add_argument("--concurrency", type=int, default=1, help="batches run at once (on different indexes)")
    parser.add_argument("--lease-seconds", type=float, default=30.0, help="lease duration; renewed at a third")
    parser.add_argument("--poll-seconds", type=float, default=10.0, help="how long one lease request waits")
    parser.add_argument("--grace-seconds", type=float, default=30.0,
                        help="on SIGTERM, how long the current batch may take before it is released")
    parser.add_argument("--log-level", default=os.environ.get("TASKHUB_LOG_LEVEL", "INFO"))
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        worker = Worker(
            args.target, load_handlers(args.module), api_key=args.api_key, tls_ca=args.tls_ca,
            index_uids=args.index_uids.split(",") if args.index_uids else None, max_tasks=args.max_tasks,
            concurrency=args.concurrency, lease_seconds=args.lease_seconds, poll_seconds=args.poll_seconds,
            grace_seconds=args.grace_seconds)
    except OSError as error:  # an unreadable --tls-ca
        print(f"taskhub worker: {error}", file=sys.stderr)
        return 2
    try:
        worker.run()
    except TaskHubError as error:
        print(f"taskhub worker: {error.code}: {error.message}", file=sys.stderr)
        return 4
    return 0
