"""The gRPC KeyService: API key management, for the master key only."""

from __future__ import annotations

from taskhub.errors import TaskHubError
from taskhub.server.edge import convert
from taskhub.server.edge.services import authorization, error_edge
from taskhub.server.rules.auth import Keyring
from taskhub.v1 import key_service_pb2 as kpb, key_service_pb2_grpc

DEFAULT_LIMIT = 20
# A key's name and description are labels, not documents (README, "Payload limits"). The caps count
# characters (code points), as JSON Schema's maxLength does, so the OpenAPI document can state them.
MAX_SIZES = {"name": 255, "description": 4096}


def check_labels(request) -> None:
    """A name or description over its cap is refused with its own code; the value is not echoed."""
    for field, cap in MAX_SIZES.items():
        if request.HasField(field) and (size := len(getattr(request, field))) > cap:
            raise TaskHubError(
                f"invalid_api_key_{field}",
                f"Invalid value at `.{field}`: the {field} of a key is at most {cap} characters, not {size}.",
            )
        if request.HasField(field) and "\x00" in getattr(request, field):
            # Stored as text: PostgreSQL's refuses a NUL, and the stores answer alike.
            raise TaskHubError(
                f"invalid_api_key_{field}",
                f"Invalid value at `.{field}`: the {field} of a key cannot hold a NUL character.",
            )


class KeyService(key_service_pb2_grpc.KeyServiceServicer):
    """`taskhub.v1.KeyService` over the keyring."""

    def __init__(self, keys: Keyring) -> None:
        self.keys = keys

    def _out(self, record) -> kpb.ApiKey:
        return convert.key_to_proto(record, self.keys.secret(record.uid))

    async def CreateKey(self, request: kpb.CreateKeyRequest, context) -> kpb.CreateKeyResponse:
        async with error_edge(context):
            self.keys.require_master(authorization(context))
            check_labels(request)
            record = await self.keys.create(
                name=request.name if request.HasField("name") else None,
                description=request.description if request.HasField("description") else None,
                actions=list(request.actions),
                indexes=list(request.indexes),
                expires_at=convert.expires_at(request),
                uid=request.uid if request.HasField("uid") else None,
            )
            return kpb.CreateKeyResponse(key=self._out(record))

    async def ListKeys(self, request: kpb.ListKeysRequest, context) -> kpb.ListKeysResponse:
        async with error_edge(context):
            self.keys.require_master(authorization(context))
            limit = request.limit if request.HasField("limit") else DEFAULT_LIMIT
            records = self.keys.list()
            page = records[request.offset : request.offset + limit]
            return kpb.ListKeysResponse(
                results=[self._out(r) for r in page], offset=request.offset, limit=limit, total=len(records)
            )

    async def GetKey(self, request: kpb.GetKeyRequest, context) -> kpb.GetKeyResponse:
        async with error_edge(context):
            self.keys.require_master(authorization(context))
            return kpb.GetKeyResponse(key=self._out(self.keys.get(request.key)))

    async def UpdateKey(self, request: kpb.UpdateKeyRequest, context) -> kpb.UpdateKeyResponse:
        async with error_edge(context):
            self.keys.require_master(authorization(context))
            check_labels(request)
            return kpb.UpdateKeyResponse(key=self._out(await self.keys.update(request.key, _changes(request))))

    async def DeleteKey(self, request: kpb.DeleteKeyRequest, context) -> kpb.DeleteKeyResponse:
        async with error_edge(context):
            self.keys.require_master(authorization(context))
            await self.keys.delete(request.key)
            return kpb.DeleteKeyResponse()


UPDATABLE = ("name", "description")


def _changes(request: kpb.UpdateKeyRequest) -> dict[str, str | None]:
    """What an update changes: with a mask, its paths (unset: cleared); without, the fields that are set."""
    if not request.HasField("update_mask"):
        return {name: getattr(request, name) for name in UPDATABLE if request.HasField(name)}
    for path in request.update_mask.paths:
        if path not in UPDATABLE:
            raise TaskHubError(
                "bad_request",
                f"Unknown field `{path}` in `update_mask`: expected one of"
                + ", ".join(f" `{name}`" for name in UPDATABLE)
                + ".",
            )
    return {path: getattr(request, path) if request.HasField(path) else None for path in request.update_mask.paths}
