"""`taskhub` as the `taskhub-client` distribution installs it: the client commands alone.

`tasks`, `keys`, `worker`, `completion` and `--version` on a running server, without the
server package (which adds `serve` and `gateway` to the same root in the whole `taskhub`
distribution). The root is built by `taskhub.client.cli.root()`.
"""

from __future__ import annotations

import sys

from taskhub.client.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
