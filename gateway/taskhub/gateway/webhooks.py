"""The `/webhooks` routes: Meilisearch's webhooks (v1.17+) in front of taskhub's gRPC WebhookService.

`app` registers `routes(edge, metadata)`. Bodies are read as Meilisearch's deserr reads them (`bad_request`
for an unknown field, `immutable_webhook_uuid` / `immutable_webhook_is_editable` for the fields a webhook
keeps, `invalid_webhook_url` / `invalid_webhook_headers` for a value of the wrong type); what a value may be
(a url that parses, valid header names, the limits) is the server's call. A webhook renders in Meilisearch's
key order: `uuid`, `isEditable`, `url`, `headers`; then, only when set, `secret` (redacted) and `droppedTasks`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskhub.errors import TaskHubError
from taskhub.gateway import enqueue
from taskhub.gateway.keys import _object, _unknown_field, _wrong_type
from taskhub.v1 import webhook_service_pb2 as wpb, webhook_service_pb2_grpc

Handler = Callable[[Request], Awaitable[Response]]
Metadata = Callable[[Request], tuple[tuple[str, str], ...]]

# In Meilisearch's order (its messages list them so); `secret` is taskhub's extension.
FIELDS = ("url", "headers", "secret")
IMMUTABLE_FIELDS = {"uuid": "immutable_webhook_uuid", "isEditable": "immutable_webhook_is_editable"}
_CODES = {"url": "invalid_webhook_url", "headers": "invalid_webhook_headers", "secret": "invalid_webhook_secret"}


def _fields(raw: bytes) -> dict:
    """The body's fields, checked for name and type: `{name: value}` with null kept as None."""
    body = _object(raw)
    for name, value in body.items():
        if name in IMMUTABLE_FIELDS:
            raise TaskHubError(
                IMMUTABLE_FIELDS[name],
                f"Immutable field `{name}`: expected one of " + ", ".join(f"`{known}`" for known in FIELDS),
            )
        if name not in FIELDS:
            raise _unknown_field(name, FIELDS)
        if name == "headers":
            if value is not None and not isinstance(value, dict):
                raise _wrong_type(_CODES[name], ".headers", "an object", value)
            for header, text in (value or {}).items():
                if text is not None and not isinstance(text, str):
                    raise _wrong_type(_CODES[name], f".headers.{header}", "a string", text)
        elif value is not None and not isinstance(value, str):
            raise _wrong_type(_CODES[name], f".{name}", "a string", value)
    return body


def create_request(raw: bytes) -> wpb.CreateWebhookRequest:
    """`POST /webhooks`: `{url, headers?}`; a null header value is stored empty, as Meilisearch does."""
    body = _fields(raw)
    request = wpb.CreateWebhookRequest()
    if body.get("url") is not None:
        request.url = body["url"]
    for name, value in (body.get("headers") or {}).items():
        request.headers[name] = value or ""
    if body.get("secret") is not None:
        request.secret = body["secret"]
    return request


def update_request(uuid: str, raw: bytes) -> wpb.UpdateWebhookRequest:
    """`PATCH /webhooks/{uuid}`: a field left out stays; `url: null` is refused; `headers: null` clears them
    all, a header set to null goes; `secret: null` removes the secret."""
    body = _fields(raw)
    request = wpb.UpdateWebhookRequest(uuid=uuid)
    if "url" in body:
        if body["url"] is None:
            request.reset_url = True
        else:
            request.url = body["url"]
    if "headers" in body:
        if body["headers"] is None:
            request.reset_headers = True
        for name, value in (body["headers"] or {}).items():
            if value is None:
                request.remove_headers.append(name)
            else:
                request.set_headers[name] = value
    if "secret" in body:
        if body["secret"] is None:
            request.reset_secret = True
        else:
            request.secret = body["secret"]
    return request


def webhook(message: wpb.Webhook) -> dict:
    """A webhook in Meilisearch's order, headers sorted by name (as its map keeps them)."""
    body = {
        "uuid": message.uuid,
        "isEditable": message.is_editable,
        "url": message.url,
        "headers": dict(sorted(message.headers.items())),
    }
    if message.has_secret:
        body["secret"] = "XXX..."
    if message.dropped:
        body["droppedTasks"] = message.dropped
    return body


def _stub(request: Request) -> tuple[webhook_service_pb2_grpc.WebhookServiceStub, float]:
    backend = request.app.state.backend
    return backend.webhooks, backend.timeout


def routes(edge: Callable[[Handler], Handler], metadata: Metadata) -> list[Route]:
    """`/webhooks` and `/webhooks/{uuid}`; `app` lends its error edge and credential forwarding."""

    async def list_webhooks(request: Request) -> Response:
        stub, timeout = _stub(request)
        response = await stub.ListWebhooks(wpb.ListWebhooksRequest(), timeout=timeout, metadata=metadata(request))
        return JSONResponse({"results": [webhook(w) for w in response.results]})

    async def create_webhook(request: Request) -> Response:
        stub, timeout = _stub(request)
        enqueue.require_json(request.headers.get("content-type"))
        message = create_request(await request.body())
        response = await stub.CreateWebhook(message, timeout=timeout, metadata=metadata(request))
        return JSONResponse(webhook(response.webhook), status_code=201)

    async def get_webhook(request: Request) -> Response:
        stub, timeout = _stub(request)
        message = wpb.GetWebhookRequest(uuid=request.path_params["uuid"])
        response = await stub.GetWebhook(message, timeout=timeout, metadata=metadata(request))
        return JSONResponse(webhook(response.webhook))

    async def update_webhook(request: Request) -> Response:
        stub, timeout = _stub(request)
        enqueue.require_json(request.headers.get("content-type"))
        message = update_request(request.path_params["uuid"], await request.body())
        response = await stub.UpdateWebhook(message, timeout=timeout, metadata=metadata(request))
        return JSONResponse(webhook(response.webhook))

    async def delete_webhook(request: Request) -> Response:
        stub, timeout = _stub(request)
        message = wpb.DeleteWebhookRequest(uuid=request.path_params["uuid"])
        await stub.DeleteWebhook(message, timeout=timeout, metadata=metadata(request))
        return Response(status_code=204)

    # One route per path, so a 405 lists every method of the path in `Allow`.
    @edge
    async def collection(request: Request) -> Response:
        return await (create_webhook if request.method == "POST" else list_webhooks)(request)

    @edge
    async def item(request: Request) -> Response:
        return await {"PATCH": update_webhook, "DELETE": delete_webhook}.get(request.method, get_webhook)(request)

    return [
        Route("/webhooks", collection, methods=["GET", "POST"]),
        Route("/webhooks/{uuid}", item, methods=["GET", "PATCH", "DELETE"]),
    ]
