"""`taskhub serve` that keeps its UNIT_LOCK counters written as JSON in $TASKHUB_BENCH_LOCK_TIMES.

bench/postgres.py and bench/claims.py start PostgreSQL replicas through it (harness.Server's
`launcher`), so the wait for and the hold of the units' lock are read in the server's own
process (storage/postgres/lock_times.py) rather than guessed from outside. The file is
rewritten every 20 ms while the counters move, and at exit; a bench reads it before and after
what it measures.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from pathlib import Path

from taskhub.server import cli

try:
    from taskhub.server.storage.postgres.lock_times import UNIT_LOCK_TIMES
except ImportError:  # a revision from before the counters (bench/postgres.py --baseline): none to write
    UNIT_LOCK_TIMES = None


def _write() -> None:
    out = os.environ.get("TASKHUB_BENCH_LOCK_TIMES")
    if out:
        Path(out + ".tmp").write_text(json.dumps(UNIT_LOCK_TIMES.snapshot()))
        os.replace(out + ".tmp", out)  # a reader never sees half a file


def _keep_writing() -> None:
    written = -1
    while True:
        if UNIT_LOCK_TIMES.units != written:
            written = UNIT_LOCK_TIMES.units
            _write()
        time.sleep(0.02)


if __name__ == "__main__" and UNIT_LOCK_TIMES is not None:
    atexit.register(_write)
    threading.Thread(target=_keep_writing, name="bench-lock-times", daemon=True).start()
if __name__ == "__main__":
    if os.environ.get("TASKHUB_BENCH_SWITCH_INTERVAL"):  # an experiment: the GIL's hand-over interval, in seconds
        sys.setswitchinterval(float(os.environ["TASKHUB_BENCH_SWITCH_INTERVAL"]))
    sys.exit(cli.main(sys.argv[1:]))
