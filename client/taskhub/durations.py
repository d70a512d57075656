"""Durations as people write them, read one way by the server's options, the gateway and the CLI.

`parse_duration()` takes `500ms`, `10s`, `1.5m`, `2h`, `1d` or a bare number of seconds
(a JSON number too) and answers microseconds; each edge words its own error from the
ValueError it raises.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*")
_MICROS = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, None: 1_000_000}
# Past this a duration means nothing here (a century), and a float would lose the microseconds anyway.
MAX_MICROS = 100 * 366 * 86_400_000_000


def parse_duration(value: object) -> int:
    """Microseconds of a duration; raises ValueError for anything else (negative, not a duration, too long)."""
    if isinstance(value, bool):
        raise ValueError(f"`{value}` is not a duration")
    if isinstance(value, int | float):
        if not 0 <= value <= MAX_MICROS / 1_000_000:
            raise ValueError(f"`{value}` is not a duration from 0 seconds to a century")
        return round(value * 1_000_000)
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"`{value}` is not a duration such as `500ms`, `10s`, `5m`, `1h`, `1d` or a number of seconds")
    micros = round(float(match.group(1)) * _MICROS[match.group(2)])
    if micros > MAX_MICROS:
        raise ValueError(f"`{value}` is longer than a century")
    return micros
