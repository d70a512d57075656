"""Webhooks on the client side: `Webhook`, and the WebhookService requests both clients send.

`to_dict()` renders Meilisearch's webhook object. The calls need the `webhooks.*` actions
(`webhooks.get`, `webhooks.create`, `webhooks.update`, `webhooks.delete`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskhub.v1 import webhook_service_pb2 as wpb

# What `update_webhook` takes for a header or the secret: a value sets it, None removes it.
UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Webhook:
    """An endpoint finished tasks are POSTed to; `Authorization` header values come redacted."""

    uuid: str
    is_editable: bool
    url: str
    headers: dict[str, str]
    has_secret: bool
    dropped: int

    @classmethod
    def from_proto(cls, message: wpb.Webhook) -> Webhook:
        return cls(
            uuid=message.uuid,
            is_editable=message.is_editable,
            url=message.url,
            headers=dict(sorted(message.headers.items())),
            has_secret=message.has_secret,
            dropped=message.dropped,
        )

    def to_dict(self) -> dict[str, Any]:
        """Meilisearch's webhook object; `secret` (redacted) and `droppedTasks` only when there are."""
        body: dict[str, Any] = {
            "uuid": self.uuid,
            "isEditable": self.is_editable,
            "url": self.url,
            "headers": dict(self.headers),
        }
        if self.has_secret:
            body["secret"] = "XXX..."
        if self.dropped:
            body["droppedTasks"] = self.dropped
        return body


def create_request(url: str, headers: Mapping[str, str] | None, secret: str | None) -> wpb.CreateWebhookRequest:
    request = wpb.CreateWebhookRequest(url=url, headers=dict(headers or {}))
    if secret is not None:
        request.secret = secret
    return request


def update_request(
    uuid: str,
    url: str | None,
    headers: Mapping[str, str | None] | None,
    secret: str | Any | None,
    clear_headers: bool,
) -> wpb.UpdateWebhookRequest:
    """`headers`: a value sets the header, None removes it; `clear_headers` first removes them all;
    `secret`: a value sets it, None removes it, left out it stays."""
    request = wpb.UpdateWebhookRequest(uuid=uuid, reset_headers=clear_headers)
    if url is not None:
        request.url = url
    for name, value in (headers or {}).items():
        if value is None:
            request.remove_headers.append(name)
        else:
            request.set_headers[name] = value
    if secret is None:
        request.reset_secret = True
    elif secret is not UNSET:
        request.secret = secret
    return request


def results(message: wpb.ListWebhooksResponse) -> list[Webhook]:
    return [Webhook.from_proto(w) for w in message.results]
