"""`taskhub` as the `taskhub-client` distribution installs it: the client commands alone.

`tasks`, `keys` and `worker` on a running server, without the server package (which
adds `serve` and `gateway` to the same commands in the whole `taskhub` distribution).
"""

from __future__ import annotations

import argparse
import sys

from taskhub.client import cli, worker_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskhub", description="Drive a running taskhub server over gRPC.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli.add_commands(commands)
    worker_cli.add_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
