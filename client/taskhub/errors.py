"""The one error vocabulary of taskhub, shared by server, gateway and client.

Every failure a caller can act on is a `TaskHubError` with a public `code`
(Meilisearch's codes where they exist). Each edge maps it exactly once: the
server to a gRPC status with `google.rpc.ErrorInfo(reason=code)`, the gateway
back to an HTTP status and JSON body, the client back to `TaskHubError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

DOMAIN = "taskhub"
LINK = "https://docs.meilisearch.com/errors#"


@dataclass(frozen=True, slots=True)
class Kind:
    """How one family of codes travels: its HTTP status, gRPC code and error type."""

    http_status: int
    grpc_code: grpc.StatusCode
    type: str


INVALID = Kind(400, grpc.StatusCode.INVALID_ARGUMENT, "invalid_request")

_KINDS: dict[str, Kind] = {
    "task_not_found": Kind(404, grpc.StatusCode.NOT_FOUND, "invalid_request"),
    "batch_not_found": Kind(404, grpc.StatusCode.NOT_FOUND, "invalid_request"),
    "no_space_left_on_device": Kind(422, grpc.StatusCode.RESOURCE_EXHAUSTED, "system"),
    "missing_authorization_header": Kind(401, grpc.StatusCode.UNAUTHENTICATED, "auth"),
    "invalid_api_key": Kind(403, grpc.StatusCode.PERMISSION_DENIED, "auth"),
    "missing_master_key": Kind(401, grpc.StatusCode.UNAUTHENTICATED, "auth"),
    # The gateway's cross-site guard (gateway/guard.py); never sent over gRPC.
    "cross_origin_request_refused": Kind(403, grpc.StatusCode.PERMISSION_DENIED, "auth"),
    "host_not_allowed": Kind(403, grpc.StatusCode.PERMISSION_DENIED, "auth"),
    "webhook_not_found": Kind(404, grpc.StatusCode.NOT_FOUND, "invalid_request"),
    "api_key_not_found": Kind(404, grpc.StatusCode.NOT_FOUND, "invalid_request"),
    "api_key_already_exists": Kind(409, grpc.StatusCode.ALREADY_EXISTS, "invalid_request"),
    # The same Idempotency-Key with another request (rules/idempotency.py).
    "idempotency_key_conflict": Kind(409, grpc.StatusCode.ALREADY_EXISTS, "invalid_request"),
    "lease_lost": Kind(409, grpc.StatusCode.FAILED_PRECONDITION, "invalid_request"),
    "invalid_watch_cursor": Kind(400, grpc.StatusCode.OUT_OF_RANGE, "invalid_request"),
    "watch_too_slow": Kind(429, grpc.StatusCode.RESOURCE_EXHAUSTED, "system"),
    "too_many_watches": Kind(429, grpc.StatusCode.RESOURCE_EXHAUSTED, "system"),
    "payload_too_large": Kind(413, grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
    "invalid_content_type": Kind(415, grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
    "missing_content_type": Kind(415, grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
    "unavailable": Kind(503, grpc.StatusCode.UNAVAILABLE, "system"),
    # Raised by the client itself when `wait_for_task` gives up.
    "timeout": Kind(504, grpc.StatusCode.DEADLINE_EXCEEDED, "system"),
    "internal": Kind(500, grpc.StatusCode.INTERNAL, "internal"),
}

_GRPC_TO_CODE = {
    grpc.StatusCode.UNAVAILABLE: "unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "unavailable",
    grpc.StatusCode.UNAUTHENTICATED: "missing_authorization_header",
    grpc.StatusCode.PERMISSION_DENIED: "invalid_api_key",
}


def kind_of(code: str) -> Kind:
    """The transport mapping of a public code; unknown codes are bad requests."""
    return _KINDS.get(code, INVALID)


class TaskHubError(Exception):
    """A failure the caller can act on; `code` is the public error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def kind(self) -> Kind:
        return kind_of(self.code)

    @property
    def type(self) -> str:
        return self.kind.type

    @property
    def link(self) -> str:
        return LINK + self.code

    def within(self, where: str) -> TaskHubError:
        """The same error, about one part of a request: "`tasks[3]`: ..."."""
        return TaskHubError(self.code, f"`{where}`: {self.message}")

    def to_dict(self) -> dict[str, str]:
        """The body Meilisearch answers with: `{message, code, type, link}`, in this order."""
        return {"message": self.message, "code": self.code, "type": self.type, "link": self.link}

    def __repr__(self) -> str:
        return f"TaskHubError({self.code!r}, {self.message!r})"


def human_size(size: int) -> str:
    """`1 MiB`, `1.5 KiB`, `3 B`: the largest binary unit the size reaches, as Meilisearch words sizes."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.15g} {unit}"
    return f"{size} B"


def payload_too_large(limit: int) -> TaskHubError:
    """Meilisearch's 413 for a body (or a task's details) over the payload size limit."""
    return TaskHubError(
        "payload_too_large",
        f"The provided payload reached the size limit. The maximum accepted payload size is {human_size(limit)}.",
    )


def from_rpc_error(error: grpc.RpcError) -> TaskHubError:
    """Reads the public code back from a gRPC error's `ErrorInfo`, whatever raised it."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    if status is not None:
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:
                return TaskHubError(info.reason.lower(), status.message)
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else None
    return TaskHubError(_GRPC_TO_CODE.get(code, "internal"), details or str(code))
