"""Retry policies: how many attempts a task gets and how long it waits between them.

The server holds one policy per task type (`--retry-policy`, over built-in defaults whose
attempts are `--max-attempts`); a task may override any field at enqueue (its `retry`,
kept in `Task.extra["retry"]`). Leasing asks `policy_of` when an attempt fails: a retryable
failure or an expired lease. Times are microseconds; the policy JSON of the option takes
durations as `500ms`, `10s`, `5m`, `1h`, `1d` or a number of seconds.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, replace
from typing import Any

from taskhub import durations
from taskhub.errors import TaskHubError

SECOND = 1_000_000
DAY = 86_400 * SECOND
CODE = "invalid_task_retry_policy"
# The bounds of each field, so that no policy makes a task wait absurdly long or retry without end.
MAX_ATTEMPTS = 100
MAX_INITIAL_DELAY = DAY
MAX_MAX_DELAY = 30 * DAY
MAX_MULTIPLIER = 10.0
# The JSON names of a policy's fields, as the option, the HTTP body and `Task.extra["retry"]` spell them.
FIELDS = ("attempts", "initialDelay", "maxDelay", "multiplier", "jitter")
# A type's name in the option: one of the task types, or `*` for every type.
TYPE_NAME = re.compile(r"\*|[a-z][A-Za-z0-9]{0,63}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts in all (the first included), the first wait, the longest wait, its growth and its jitter."""

    attempts: int = 5
    initial_delay: int = SECOND
    max_delay: int = 3_600 * SECOND
    multiplier: float = 2.0
    jitter: float = 0.1

    def delay(self, failed: int, draw: float | None = None) -> int:
        """The wait after the `failed`-th failed attempt (1 for the first), jittered by `draw` in [0, 1)."""
        base = min(self.initial_delay * self.multiplier ** max(failed - 1, 0), self.max_delay)
        spread = self.jitter * (2 * (random.random() if draw is None else draw) - 1)
        return max(0, min(int(base * (1 + spread)), self.max_delay))

    def merged(self, override: dict[str, Any] | None) -> RetryPolicy:
        """This policy with a task's own fields (as `checked_override` answers them) over it."""
        if not override:
            return self
        return replace(
            self,
            attempts=override.get("attempts", self.attempts),
            initial_delay=override.get("initialDelay", self.initial_delay),
            max_delay=override.get("maxDelay", self.max_delay),
            multiplier=override.get("multiplier", self.multiplier),
            jitter=override.get("jitter", self.jitter),
        )


class RetryPolicies:
    """The server's policy for each type: the default, then `*`, then the type's own entry."""

    def __init__(self, default: RetryPolicy, by_type: dict[str, dict[str, Any]] | None = None) -> None:
        self.default = default.merged((by_type or {}).get("*"))
        self.by_type = {name: self.default.merged(fields) for name, fields in (by_type or {}).items() if name != "*"}

    def policy_of(self, type_label: str, override: dict[str, Any] | None = None) -> RetryPolicy:
        return self.by_type.get(type_label, self.default).merged(override)

    def checked(self, type_label: str, override: dict[str, Any] | None) -> None:
        """Refuses a task's override that, over its type's policy, waits at most less than at first."""
        policy = self.policy_of(type_label, override)
        if policy.max_delay < policy.initial_delay:
            raise TaskHubError(
                CODE,
                f"`retry.maxDelay` ({policy.max_delay / SECOND:g}s) must be at least `retry.initialDelay`"
                f" ({policy.initial_delay / SECOND:g}s), with the server's policy for `{type_label}` filling"
                " what the task does not set.",
            )


def checked_override(fields: dict[str, Any], where: str = "retry") -> dict[str, Any]:
    """A policy's fields (durations in microseconds), each within its bounds, or `invalid_task_retry_policy`."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in FIELDS:
            raise TaskHubError(CODE, f"`{where}.{key}` is not a retry policy field; they are " + _names() + ".")
        if key == "attempts":
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
                raise TaskHubError(CODE, f"`{where}.attempts` must be an integer from 1 to {MAX_ATTEMPTS}.")
        elif key in ("initialDelay", "maxDelay"):
            bound = MAX_INITIAL_DELAY if key == "initialDelay" else MAX_MAX_DELAY
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bound:
                raise TaskHubError(CODE, f"`{where}.{key}` must be a duration from 0 to {bound // DAY} day(s).")
        elif key == "multiplier":
            if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= MAX_MULTIPLIER:
                raise TaskHubError(CODE, f"`{where}.multiplier` must be a number from 1 to {MAX_MULTIPLIER:g}.")
            value = float(value)
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise TaskHubError(CODE, f"`{where}.jitter` must be a number from 0 to 1.")
        else:
            value = float(value)
        out[key] = value
    if out.get("maxDelay", MAX_MAX_DELAY) < out.get("initialDelay", 0):
        raise TaskHubError(CODE, f"`{where}.maxDelay` must be at least `{where}.initialDelay`.")
    return out


def parse_duration(value: Any, where: str) -> int:
    """Microseconds from `500ms`, `10s`, `5m`, `1h`, `1d` or a number of seconds."""
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise TaskHubError(CODE, f"`{where}`: {exc}.") from None


def parse_policies(text: str | None, attempts: int) -> RetryPolicies:
    """The `--retry-policy` option: `{"*": {...}, "sendEmail": {"attempts": 10, "initialDelay": "30s"}}`.

    Every type's attempts default to `attempts` (`--max-attempts`). Raises ValueError saying what is wrong.
    """
    default = RetryPolicy(attempts=attempts)
    if not text or not text.strip():
        return RetryPolicies(default)
    try:
        given = json.loads(text)
        if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
            raise TaskHubError(CODE, 'give a JSON object of type name -> policy, such as {"*": {"attempts": 3}}')
        by_type = {}
        for name, fields in given.items():
            if not TYPE_NAME.fullmatch(name):
                raise TaskHubError(CODE, f"`{name}` is not a task type's name, nor `*`")
            fields = {
                key: parse_duration(value, f"{name}.{key}") if key in ("initialDelay", "maxDelay") else value
                for key, value in fields.items()
            }
            by_type[name] = checked_override(fields, name)
        policies = RetryPolicies(default, by_type)
        for name in by_type:
            policies.checked(name, None)
        return policies
    except json.JSONDecodeError as exc:
        raise ValueError(f"--retry-policy is not JSON: {exc}") from None
    except TaskHubError as error:
        raise ValueError(f"--retry-policy: {error.message}") from None


def _names() -> str:
    return ", ".join(f"`{name}`" for name in FIELDS)
