"""A task's own retry policy as JSON (the HTTP body's `retry`, the Python client's `retry=`) into a RetryPolicy.

Fields: `attempts`, `initialDelay`, `maxDelay` (durations: `500ms`, `10s`, `5m`, `1h`, `1d`
or seconds), `multiplier`, `jitter`; what is left out takes the server's policy for the
task's type. Only the shape is checked here (`invalid_task_retry_policy`); ranges are the server's.
"""

from __future__ import annotations

from taskhub import durations
from taskhub.errors import TaskHubError
from taskhub.v1 import task_pb2

RETRY_FIELDS = ("attempts", "initialDelay", "maxDelay", "multiplier", "jitter")
U32_MAX = 2**32 - 1


def policy(value: object) -> task_pb2.RetryPolicy:
    """A `retry` object as a RetryPolicy; fields left out take the server's policy for the task's type."""
    if not isinstance(value, dict):
        raise _invalid("`retry` must be an object of " + _fields() + ".")
    message = task_pb2.RetryPolicy()
    for key, item in value.items():
        if key not in RETRY_FIELDS:
            raise _invalid(f"`retry.{key}` is not a retry policy field; they are {_fields()}.")
        if item is None:
            continue
        if key == "attempts":
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= U32_MAX:
                raise _invalid("`retry.attempts` must be a positive integer.")
            message.attempts = item
        elif key in ("initialDelay", "maxDelay"):
            try:
                micros = durations.parse_duration(item)
            except ValueError as exc:
                raise _invalid(f"`retry.{key}`: {exc}.") from None
            field = message.initial_delay if key == "initialDelay" else message.max_delay
            field.seconds, field.nanos = micros // 1_000_000, micros % 1_000_000 * 1_000
        else:
            if isinstance(item, bool) or not isinstance(item, int | float):
                raise _invalid(f"`retry.{key}` must be a number.")
            setattr(message, key, float(item))
    return message


def _invalid(message: str) -> TaskHubError:
    return TaskHubError("invalid_task_retry_policy", message)


def _fields() -> str:
    return ", ".join(f"`{name}`" for name in RETRY_FIELDS)
