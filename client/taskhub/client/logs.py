"""Log output for `taskhub serve`, `taskhub gateway` and `taskhub worker`: text or JSON lines on stderr.

`--log-format text` (the default) writes `time LEVEL logger: message`; `--log-format json` writes one
JSON object a line: `time` (RFC 3339, UTC), `level`, `logger`, `message`, the event's own fields
(`event`, `uids`, `worker`, ... given as `extra=` to the logging call) and `exception` with its
traceback, if any. The message says everything in words, so the text format loses nothing an
operator reads; the fields are there for machines.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What every LogRecord has: anything else on a record came from `extra=` and is the event's own.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line; values JSON lacks are written as their `str`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def check(level: str, format: str) -> str | None:
    """What is wrong with a level or format given on the command line, or None."""
    if level.upper() not in LEVELS:
        return f"--log-level: `{level}` is not one of {', '.join(LEVELS)}"
    if format.lower() not in FORMATS:
        return f"--log-format: `{format}` is not one of {', '.join(FORMATS)}"
    return None


def start_logging(level: str, format: str = "text") -> None:
    """Logs at `level` to stderr in `format` (`text` or `json`), replacing any handler set before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if format.lower() == "json" else logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
