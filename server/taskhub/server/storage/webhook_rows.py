"""The webhook row codec both stores share: the columns, and a row to a `WebhookRecord` and back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from taskhub.server.storage.contract import WebhookRecord

WEBHOOK_COLUMNS = "uuid, url, headers, secret, created_at, delivered, dropped"


def webhook_record(row: Sequence[Any]) -> WebhookRecord:
    uuid, url, headers, secret, created_at, delivered, dropped = row
    return WebhookRecord(
        uuid=uuid,
        url=url,
        headers=json.loads(headers),
        secret=secret,
        created_at=created_at,
        delivered=delivered,
        dropped=dropped,
    )


def config_row(record: WebhookRecord) -> tuple[str, str, str | None]:
    """What a rewrite changes: url, headers (JSON), secret."""
    return record.url, json.dumps(record.headers, separators=(",", ":")), record.secret
