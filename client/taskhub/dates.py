"""Date bounds of the task filters (SPEC §3), read one way by the gateway, the client and the CLI.

`parse_bound()` takes RFC 3339 date-times (`T`, `t` or a space between date and time, as
RFC 3339 §5.6 allows; `Z` or a `+hh:mm` offset; a fraction of any length, kept to the
nanosecond) and bare `YYYY-MM-DD` dates, and answers (seconds, nanos) since the epoch.
Each edge words its own error from the ValueError it raises.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_BARE_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The shape only (ASCII digits, an offset within a day); datetime checks the calendar and the clock.
_DATE_TIME = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]+))?"
    r"([Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = _EPOCH.date().toordinal()
_DAY = 86_400


def parse_bound(text: str, *, after: bool = False) -> tuple[int, int]:
    """(seconds, nanos) since the epoch of a date bound; raises ValueError for anything else.

    A bare date is midnight UTC of that day, or of the next day when `after`: bounds are
    exclusive, so "after 2024-01-31" starts once that day is over. Fraction digits past
    the ninth are dropped, never rounded, as Meilisearch keeps nanoseconds.
    """
    if _BARE_DATE.fullmatch(text):
        day = date.fromisoformat(text).toordinal() - _EPOCH_DAY + (1 if after else 0)
        return day * _DAY, 0
    if (match := _DATE_TIME.fullmatch(text)) is None:
        raise ValueError(f"`{text}` is neither an RFC 3339 date-time nor a YYYY-MM-DD date")
    day, clock, fraction, zone = match.groups()
    moment = datetime.fromisoformat(f"{day}T{clock}{'+00:00' if zone in ('Z', 'z') else zone}")
    return (moment - _EPOCH) // timedelta(seconds=1), int(fraction[:9].ljust(9, "0")) if fraction else 0
