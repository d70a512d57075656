"""Schemathesis drives every documented operation of the gateway, in front of a real server.

A real uvicorn on 127.0.0.1 serves the gateway beside a real gRPC server (with a master key,
so the `/keys` routes answer) in this test's event loop; schemathesis loads the document the
gateway serves and sends, per operation, a bounded and derandomized run of requests from a
thread. The document and the server must agree both ways: no 5xx, every answer as documented
(status, content type, schema, headers), no request the document allows is refused
(`positive_data_acceptance`), and no request it forbids is taken (`negative_data_rejection`, from
schemathesis' negative generation). The server-sent event routes never end, so they are left out here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from datetime import UTC, date, datetime

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi import checks

from conftest import MASTER_KEY
from taskhub import dates, durations
from taskhub.gateway.enqueue import MAX_DEPTH
from taskhub.gateway.openapi import OPENAPI
from taskhub.gateway.openapi_schemas import MAX_FILTER_VALUES
from taskhub.server import app

pytestmark = pytest.mark.slow  # schemathesis generates many requests per operation

# Follow a stream: they never end, so no request of theirs could be answered.
STREAMING = {("GET", "/tasks/events"), ("GET", "/tasks/{uid}/events")}
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in OPENAPI["paths"].items()
    for method in item
    if (method.upper(), path) not in STREAMING
)
EXAMPLES = 25
ANSWERS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
CHECKS = {
    GenerationMode.POSITIVE: [*ANSWERS, checks.positive_data_acceptance],
    GenerationMode.NEGATIVE: [*ANSWERS, checks.negative_data_rejection],
}
# These take no parameter, header or body (the key is not theirs: they are served without one), so no
# request of theirs breaks the document and hypothesis finds no negative case to make.
NO_INPUT = {("GET", "/health"), ("GET", "/openapi.json"), ("GET", "/dashboard"), ("GET", "/")}
NEGATIVE = [
    pytest.param(method, path, id=f"{method} {path}") for method, path in OPERATIONS if (method, path) not in NO_INPUT
]
LAST_SECOND = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() + 1  # a key expires by then
AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
async def live(config):
    service = await app.start(
        dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0", master_key=MASTER_KEY)
    )
    yield f"http://127.0.0.1:{service.gateway.port}"
    await service.stop(0)


def _exercise(url: str, method: str, path: str, mode: GenerationMode) -> None:
    """Sends one operation's requests; raises schemathesis' report of the first mismatch."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operation = schema[path][method]

    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        # The server's cap on a filter's values is a count, which no pattern says (the description does).
        hypothesis.assume(mode == GenerationMode.NEGATIVE or not _too_many_values(case.query))
        # Nor is the cap on how deep settings nest (a schema counting levels would be MAX_DEPTH copies).
        hypothesis.assume(mode == GenerationMode.NEGATIVE or _depth(case.body) <= MAX_DEPTH)
        # Nor that a key's expiry is in the future and within year 9999 once its offset is applied.
        hypothesis.assume(mode == GenerationMode.NEGATIVE or _expiry_is_reachable(case.body))
        # Nor that a task's runAt lies near now, nor that its retry policy waits at most no less than at first.
        hypothesis.assume(mode == GenerationMode.NEGATIVE or _later_is_acceptable(case.body))
        if (method, path) == ("POST", "/webhooks"):
            _forget_webhooks(url)  # at most 20 may exist: each case starts with none
        headers = AUTH
        if mode == GenerationMode.NEGATIVE and "Authorization" not in (case.headers or {}):
            # A case whose broken rule is the missing key: adding ours would send a valid request.
            headers = None
        case.call_and_validate(base_url=url, headers=headers, checks=CHECKS[mode])

    if mode == GenerationMode.NEGATIVE:
        # Random negative cases break one rule of many, seldom a bound by one; schemathesis' coverage
        # cases break each keyword at its edge (a string one character over maxLength, ...), in a fixed list.
        for case in _coverage(schema, operation):
            run = hypothesis.example(case=case)(run)
    run()


def _forget_webhooks(url: str) -> None:
    import httpx

    for webhook in httpx.get(f"{url}/webhooks", headers=AUTH).json()["results"]:
        if webhook["isEditable"]:
            httpx.delete(f"{url}/webhooks/{webhook['uuid']}", headers=AUTH).raise_for_status()


def _too_many_values(query) -> bool:
    values = query.get("filters", query) if isinstance(query, dict) else {}
    return any(
        isinstance(value, str) and len([v for v in value.split(",") if v]) > MAX_FILTER_VALUES
        for value in values.values()
    )


def _depth(body) -> int:
    """How deep a task body's details nest, counted as the server does: the details 0, their values 1, ..."""

    def deepest(value, depth: int) -> int:
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        return max((deepest(item, depth + 1) for item in items), default=depth)

    return deepest(body.get("details"), 0) if isinstance(body, dict) else 0


def _expiry_is_reachable(body) -> bool:
    """Whether a key body's `expiresAt` (a string the document's pattern allows) lies after now and by 9999."""
    expires_at = body.get("expiresAt") if isinstance(body, dict) else None
    if not isinstance(expires_at, str):
        return True
    day = date.fromisoformat(expires_at[:10])
    clock = [int(part) for part in expires_at[11:19].split(":")] if len(expires_at) > 10 else [0, 0, 0]
    offset = re.search(r"([+-])([0-9]{2}):([0-9]{2})$", expires_at)
    moment = datetime(day.year, day.month, day.day, *clock, tzinfo=UTC).timestamp()
    if offset:
        moment -= (1 if offset[1] == "+" else -1) * (int(offset[2]) * 3600 + int(offset[3]) * 60)
    return time.time() + 60 < moment < LAST_SECOND


def _later_is_acceptable(body) -> bool:
    """Whether a task body's `runAt` lies from a day ago to 366 days ahead, and its `retry` keeps maxDelay >=
    initialDelay over the server's default policy (1 s, 1 h)."""
    if not isinstance(body, dict):
        return True
    run_at = body.get("runAt")
    if isinstance(run_at, str):
        seconds, _ = dates.parse_bound(run_at)
        if not time.time() - 86_400 + 60 < seconds < time.time() + 366 * 86_400 - 60:
            return False
    retry = body.get("retry")
    if isinstance(retry, dict):
        initial, most = retry.get("initialDelay"), retry.get("maxDelay")
        initial = 1_000_000 if initial is None else durations.parse_duration(initial)
        most = 3_600_000_000 if most is None else durations.parse_duration(most)
        return initial <= most and initial <= 86_400_000_000 and most <= 30 * 86_400_000_000
    return True


def _coverage(schema, operation) -> list:
    return list(
        CoverageGenerator(
            operation=operation,
            generation_modes=[GenerationMode.NEGATIVE],
            auth_storage=None,
            override=Override(),
            generation_config=schema.config.generation_for(operation=operation, phase="coverage"),
            feedback=FeedbackSources(),
        )
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_the_server_answers_as_the_document_says(live, method, path):
    await asyncio.to_thread(_exercise, live, method, path, GenerationMode.POSITIVE)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("method", "path"), NEGATIVE)
async def test_the_server_refuses_what_the_document_forbids(live, method, path):
    await asyncio.to_thread(_exercise, live, method, path, GenerationMode.NEGATIVE)
