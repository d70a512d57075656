"""The gRPC WebhookService: Meilisearch's webhooks over the rules in `rules/webhooks.py`."""

from __future__ import annotations

from taskhub.server.edge.services import authorization, error_edge
from taskhub.server.rules.auth import Keyring
from taskhub.server.rules.webhooks import Patch, Webhook, Webhooks
from taskhub.v1 import webhook_service_pb2 as wpb, webhook_service_pb2_grpc


def webhook_to_proto(webhook: Webhook) -> wpb.Webhook:
    return wpb.Webhook(
        uuid=webhook.uuid,
        is_editable=webhook.is_editable,
        url=webhook.url,
        headers=webhook.headers,
        has_secret=webhook.has_secret,
        dropped=webhook.dropped,
    )


def patch_from_proto(request: wpb.UpdateWebhookRequest) -> Patch:
    return Patch(
        url=request.url if request.HasField("url") else None,
        reset_url=request.reset_url,
        set_headers=dict(request.set_headers),
        remove_headers=list(request.remove_headers),
        reset_headers=request.reset_headers,
        secret=request.secret if request.HasField("secret") else None,
        reset_secret=request.reset_secret,
    )


class WebhookService(webhook_service_pb2_grpc.WebhookServiceServicer):
    """`taskhub.v1.WebhookService`: each call needs its `webhooks.*` action."""

    def __init__(self, webhooks: Webhooks, keys: Keyring) -> None:
        self.webhooks = webhooks
        self.keys = keys

    async def ListWebhooks(self, request: wpb.ListWebhooksRequest, context) -> wpb.ListWebhooksResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "webhooks.get")
            return wpb.ListWebhooksResponse(results=[webhook_to_proto(w) for w in await self.webhooks.list()])

    async def GetWebhook(self, request: wpb.GetWebhookRequest, context) -> wpb.GetWebhookResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "webhooks.get")
            return wpb.GetWebhookResponse(webhook=webhook_to_proto(await self.webhooks.get(request.uuid)))

    async def CreateWebhook(self, request: wpb.CreateWebhookRequest, context) -> wpb.CreateWebhookResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "webhooks.create")
            webhook = await self.webhooks.create(
                request.url if request.HasField("url") else None,
                dict(request.headers),
                request.secret if request.HasField("secret") else None,
            )
            return wpb.CreateWebhookResponse(webhook=webhook_to_proto(webhook))

    async def UpdateWebhook(self, request: wpb.UpdateWebhookRequest, context) -> wpb.UpdateWebhookResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "webhooks.update")
            webhook = await self.webhooks.update(request.uuid, patch_from_proto(request))
            return wpb.UpdateWebhookResponse(webhook=webhook_to_proto(webhook))

    async def DeleteWebhook(self, request: wpb.DeleteWebhookRequest, context) -> wpb.DeleteWebhookResponse:
        async with error_edge(context):
            self.keys.require(authorization(context), "webhooks.delete")
            await self.webhooks.delete(request.uuid)
            return wpb.DeleteWebhookResponse()
