"""Webhooks: Meilisearch's `/webhooks` rules (v1.17+), and the outbox of finished tasks they are owed.

What carries over from Meilisearch (read in its `routes/webhooks.rs`, docs/webhooks.md says more): at most
20 webhooks made through the API and 200 headers each; a url is required and must parse; header names and
values must be valid HTTP; the webhook of `--task-webhook-url` is shown under the nil uuid, not editable;
`Authorization` values are redacted when shown. Extensions: a secret per webhook signs each delivery (HMAC),
and a url naming a literal address outside the allowed networks is refused when set (delivery checks every
resolved address too).

Every unit of work that finishes tasks appends them to the outbox in the same commit (`owe`), so a finished
task is never lost between its commit and its delivery; the outbox is bounded (`bound` entries): past it
the oldest entries go, counted per webhook. Nothing here is cached: every call reads the store, so another
server on the same database sees a change at once.
"""

from __future__ import annotations

import logging
import re
import uuid as uuids
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from taskhub.errors import TaskHubError
from taskhub.server.model import TaskStatus
from taskhub.server.rules.ip_policy import IpPolicy
from taskhub.server.rules.units import Units
from taskhub.server.storage.contract import Reader, Transaction, WebhookRecord

log = logging.getLogger(__name__)

NIL = str(uuids.UUID(int=0))
MAX_WEBHOOKS = 20
MAX_HEADERS = 200
# Entries the outbox keeps at most, unless `--webhook-outbox-size` says otherwise.
DEFAULT_BOUND = 100_000
FINISHED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110's token)
_VALUE = re.compile(r"[\t\x20-\x7e]*")  # visible ASCII, space and tab
# The urls taken (the OpenAPI document states the same, with host names only): http or https, a host name
# (its last label starting with a letter) or an address, a port up to 65535, then a path or query of visible
# ASCII; no user info.
PORT = r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
HOST_NAME = r"(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*"
URL_TAIL = r"(?:[/?][\x21-\x7e]*)?"
URL_PATTERN = rf"^https?://{HOST_NAME}{PORT}{URL_TAIL}$"
_URL = re.compile(rf"https?://(?:{HOST_NAME}|[0-9.]+|\[[0-9A-Fa-f:.]+\]){PORT}{URL_TAIL}")
_SECRET = re.compile(r"[\x20-\x7e]{1,1024}")


@dataclass(slots=True)
class Webhook:
    """A webhook as shown: `headers` with `Authorization` redacted, `secret` only whether there is one."""

    uuid: str
    is_editable: bool
    url: str
    headers: dict[str, str]
    has_secret: bool = False
    dropped: int = 0


@dataclass(slots=True)
class Patch:
    """What a PATCH changes: `url` None leaves it, `reset_url` clears it (an error: a url is required);
    `set_headers` and `remove_headers` change names one by one, after `reset_headers` clears them all."""

    url: str | None = None
    reset_url: bool = False
    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: list[str] = field(default_factory=list)
    reset_headers: bool = False
    secret: str | None = None
    reset_secret: bool = False


@dataclass(slots=True)
class Counts:
    """Deliveries since start, for metrics: POSTs answered 2xx, POSTs failed, outbox entries dropped."""

    ok: int = 0
    failed: int = 0
    dropped: int = 0


def hide_secret(value: str) -> str:
    """Meilisearch's redaction: a few leading characters kept (more for longer values), the rest `X...`."""
    offset = len("Bearer ") if value.startswith("Bearer ") else 0
    rest = len(value) - offset
    for limit, kept, mask in ((10, 0, "XXX..."), (20, 2, "XXXX..."), (30, 3, "XXXXX...")):
        if rest < limit:
            return value[: offset + kept] + mask
    return value[: offset + 5] + "XXXXXX..."


def redacted(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: hide_secret(value) if name.lower() == "authorization" else value
        for name, value in sorted(headers.items())
    }


def not_found(uuid: str) -> TaskHubError:
    return TaskHubError("webhook_not_found", f"Webhook `{uuid}` not found.")


def immutable(uuid: str) -> TaskHubError:
    return TaskHubError(
        "immutable_webhook",
        f"Webhook `{uuid}` is immutable. The webhook defined from the command line cannot be modified using the API.",
    )


def parse_uuid(text: str) -> str:
    """A uuid in any spelling Meilisearch reads, in its lower-case hyphenated form."""
    try:
        return str(uuids.UUID(text))
    except ValueError:
        pass
    # Worded as Meilisearch's uuid parser words the first fault it finds.
    bad = next(((i, c) for i, c in enumerate(text) if c not in "0123456789abcdefABCDEF-"), None)
    why = f"invalid character: found `{bad[1]}` at {bad[0]}" if bad else f"invalid length: found {len(text)}"
    raise TaskHubError("invalid_webhook_uuid", f"Invalid UUID: {why}")


def _missing_url(uuid: str) -> TaskHubError:
    return TaskHubError("invalid_webhook_url", f"The URL for the webhook `{uuid}` is missing.")


def _too_many_headers(uuid: str) -> TaskHubError:
    return TaskHubError(
        "invalid_webhook_headers",
        f"Too many headers for the webhook `{uuid}`. Please limit the number of headers to {MAX_HEADERS}."
        " Hint: To remove an already defined header set its value to `null`",
    )


class Webhooks:
    """The webhooks' rules over the store; `counts` are the deliveries' (the delivery loop adds to them)."""

    def __init__(
        self,
        units: Units,
        clock: Callable[[], int],
        *,
        reserved_url: str | None = None,
        reserved_authorization: str | None = None,
        bound: int = DEFAULT_BOUND,
        policy: IpPolicy | None = None,
    ) -> None:
        self.units = units
        self.clock = clock
        self.reserved_url = reserved_url or None
        self.reserved_authorization = reserved_authorization
        self.bound = bound
        self.policy = policy or IpPolicy()
        self.counts = Counts()
        units.before_commit = self.owe

    # -- the outbox ------------------------------------------------------------

    def owe(self, tx: Transaction) -> None:
        """In every unit of work, before it commits: the tasks it finished go to the outbox, if any webhook is owed."""
        changes = tx.changes
        finished = list(
            dict.fromkeys(t.uid for t in changes.tasks if t.status in FINISHED and t.uid not in changes.deleted)
        )
        if not finished or not tx.webhooks.has_webhooks():
            return
        dropped = tx.webhooks.add_outbox(finished, self.bound)
        if dropped:
            self.units.after_commit(lambda: self._dropped(dropped))

    def _dropped(self, dropped: int) -> None:
        """Once the unit that dropped entries committed: counted and said once."""
        self.counts.dropped += dropped
        log.warning("the webhook outbox is full (%d entries): %d undelivered entries dropped", self.bound, dropped)

    async def sync_reserved(self) -> None:
        """At start: the reserved webhook's row (its progress) exists while `--task-webhook-url` is set."""
        await self.units.run(self._sync_reserved)

    def _sync_reserved(self, tx: Transaction) -> None:
        if self.reserved_url is None:
            tx.webhooks.delete_webhook(NIL)
        elif tx.webhooks.get_webhook(NIL) is None:
            tx.webhooks.put_webhook(WebhookRecord(NIL, "", {}, None, self.clock()))

    # -- what a delivery needs -------------------------------------------------

    def target(self, record: WebhookRecord) -> WebhookRecord:
        """The record with what it is sent with: the reserved one's url and header come from the settings."""
        if record.uuid != NIL:
            return record
        headers = {} if self.reserved_authorization is None else {"Authorization": self.reserved_authorization}
        return WebhookRecord(NIL, self.reserved_url or "", headers, None, record.created_at, record.delivered)

    # -- reading ---------------------------------------------------------------

    def _shown(self, record: WebhookRecord) -> Webhook:
        record = self.target(record)
        return Webhook(
            uuid=record.uuid,
            is_editable=record.uuid != NIL,
            url=record.url,
            headers=redacted(record.headers),
            has_secret=record.secret is not None,
            dropped=record.dropped,
        )

    async def list(self) -> list[Webhook]:
        """Every webhook by uuid (the reserved one, nil, first), as Meilisearch lists them."""
        records = await self.units.read(_all)
        shown = [self._shown(r) for r in records if r.uuid != NIL or self.reserved_url is not None]
        return sorted(shown, key=lambda w: w.uuid)

    async def get(self, uuid: str) -> Webhook:
        uuid = parse_uuid(uuid)
        record = await self.units.read(_one, uuid)
        if record is None or (uuid == NIL and self.reserved_url is None):
            raise not_found(uuid)
        return self._shown(record)

    # -- writing ---------------------------------------------------------------

    async def create(self, url: str | None, headers: dict[str, str], secret: str | None = None) -> Webhook:
        uuid = str(uuids.uuid4())
        if len(headers) > MAX_HEADERS:
            raise _too_many_headers(uuid)
        record = WebhookRecord(uuid, url or "", dict(headers), secret or None, self.clock())
        await self.units.run(self._create, record)
        return self._shown(record)

    def _create(self, tx: Transaction, record: WebhookRecord) -> None:
        """Meilisearch's order: the count, then the url's presence, then the rest. Counted in the unit of work:
        two servers creating at once cannot pass the limit together."""
        if sum(1 for r in tx.webhooks.all_webhooks() if r.uuid != NIL) >= MAX_WEBHOOKS:
            raise TaskHubError(
                "invalid_webhooks",
                f"Defining too many webhooks would crush the server. Please limit the number of webhooks to"
                f" {MAX_WEBHOOKS}. You may use a third-party proxy server to dispatch events to more than"
                f" {MAX_WEBHOOKS} endpoints.",
            )
        self.check(record)  # a missing url first, as its message says
        tx.webhooks.put_webhook(record)

    async def update(self, uuid: str, patch: Patch) -> Webhook:
        uuid = parse_uuid(uuid)
        if uuid == NIL:
            raise immutable(uuid)
        return self._shown(await self.units.run(self._update, uuid, patch))

    def _update(self, tx: Transaction, uuid: str, patch: Patch) -> WebhookRecord:
        record = tx.webhooks.get_webhook(uuid)
        if record is None:
            raise not_found(uuid)
        if patch.reset_url:
            raise _missing_url(uuid)
        if patch.url is not None:
            record.url = patch.url
        if patch.reset_headers:
            record.headers = {}
        record.headers.update(patch.set_headers)
        for name in patch.remove_headers:
            record.headers.pop(name, None)
        if patch.reset_secret:
            record.secret = None
        elif patch.secret is not None:
            record.secret = patch.secret or None
        self.check(record)
        tx.webhooks.put_webhook(record)
        return record

    async def delete(self, uuid: str) -> None:
        uuid = parse_uuid(uuid)
        if uuid == NIL:
            raise immutable(uuid)
        if not await self.units.run(_delete, uuid):
            raise not_found(uuid)

    # -- checks ----------------------------------------------------------------

    def check(self, record: WebhookRecord) -> None:
        """Meilisearch's checks of a webhook as it would be stored, in its order; then the allowed networks."""
        if not record.url:
            raise _missing_url(record.uuid)
        if len(record.headers) > MAX_HEADERS:
            raise _too_many_headers(record.uuid)
        for name, value in record.headers.items():
            if not _TOKEN.fullmatch(name):
                raise TaskHubError("invalid_webhook_headers", f"Invalid header name `{name}`: invalid HTTP header name")
            if not _VALUE.fullmatch(value):
                raise TaskHubError(
                    "invalid_webhook_headers", f"Invalid header value `{name}`: failed to parse header value"
                )
        check_url(record.url, self.policy)
        if record.secret is not None and not _SECRET.fullmatch(record.secret):
            raise TaskHubError(
                "invalid_webhook_secret", "Invalid value at `.secret`: 1 to 1024 visible ASCII characters or spaces."
            )


def check_url(url: str, policy: IpPolicy) -> None:
    """Whether `url` may be a webhook's: it parses (Meilisearch's check), then taskhub's own (http or https,
    the documented shape, not a literal address outside the allowed networks)."""

    def invalid(why: str) -> TaskHubError:
        return TaskHubError("invalid_webhook_url", f"Invalid URL `{url}`: {why}")

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not one
    except ValueError as error:
        raise invalid(str(error)) from None
    if not parts.scheme or ":" not in url:
        raise invalid("relative URL without a base")
    if parts.scheme.lower() not in ("http", "https"):
        raise invalid(f"the scheme `{parts.scheme}` is not `http` nor `https`, the only ones delivered to")
    if not parts.hostname:
        raise invalid("empty host")
    if not _URL.fullmatch(url):
        raise invalid(
            "taskhub takes `http(s)://host[:port][/path][?query]`: a host name or an address, no user info,"
            " visible ASCII only"
        )
    refused = policy.refuses_literal(parts.hostname)
    if refused is not None:
        raise invalid(refused)


def _all(reader: Reader) -> list[WebhookRecord]:
    return reader.webhooks.all_webhooks()


def _one(reader: Reader, uuid: str) -> WebhookRecord | None:
    return reader.webhooks.get_webhook(uuid)


def _delete(tx: Transaction, uuid: str) -> bool:
    return tx.webhooks.delete_webhook(uuid)
