"""Channels to one taskhub server or several replicas: the target, gRPC's `round_robin`, and its retry policy.

A target is anything gRPC takes (`host:port`, `dns:///name:port` whose name has several
addresses, `ipv4:10.0.0.1:7701,10.0.0.2:7701`, `unix:/path`), or a comma list of
`host:port` written plainly (`10.0.0.1:7701,10.0.0.2:7701`), made into gRPC's `ipv4:` or
`ipv6:` form here. Calls are spread over every address by `round_robin`, which sends
them only to the replicas it is connected to.

Retries are gRPC's own (`retryPolicy` in the service config), on UNAVAILABLE only and only
for the calls listed in `RETRIED`: those that are safe to send twice. A retry is sent to
the next connected replica, so one replica's death costs a call one retry. The watch
streams are not listed: the clients resume them from the last sequence seen instead
(`Resumer`), which gRPC cannot do, so no call is retried by both layers.
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

# gRPC's own names for what it resolves itself: these targets go through untouched.
SCHEMES = ("dns", "ipv4", "ipv6", "unix", "unix-abstract", "vsock", "xds")

# Pings on every connection: one unanswered for KEEPALIVE_TIMEOUT_MS drops the connection. The servers
# allow pings this often (taskhub.server.app); gRPC's defaults would ping every 2 hours.
KEEPALIVE_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000

# gRPC gives a call at most this many attempts, whatever the policy asks (it clamps the service config).
MAX_ATTEMPTS = 5

# The unary calls that are safe to send twice: reads; enqueues, which the clients and the gateway always send
# with an idempotency key; and the worker's calls, which the lease token makes safe to repeat. The others
# (cancel, delete, requeue, key changes) are not retried: a lost answer may hide a change that was made.
RETRIED = {
    "taskhub.v1.TaskService": (
        "EnqueueTask",
        "EnqueueTasks",
        "GetTask",
        "ListTasks",
        "GetBatch",
        "ListBatches",
        "GetVersion",
    ),
    "taskhub.v1.KeyService": ("GetKey", "ListKeys"),
    "taskhub.v1.OperationsService": ("ListLeases", "GetActivity"),
    "taskhub.v1.WebhookService": ("GetWebhook", "ListWebhooks"),
    "taskhub.v1.MetricsService": ("GetMetrics",),
    "taskhub.v1.WorkerService": ("LeaseTasks", "RenewLease", "CompleteTasks", "ReleaseLease"),
    "grpc.health.v1.Health": ("Check",),
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff for calls that hit UNAVAILABLE: gRPC's retry policy for unary calls (at most
    `MAX_ATTEMPTS` attempts there), the clients' own pause between resumptions of a broken watch."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def backoff(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (0-based); None when out of attempts."""
        if attempt + 1 >= self.max_attempts:
            return None
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**attempt)
        # Jitter spreads clients that lost the same server so they do not return in lockstep.
        return ceiling * random.uniform(0.5, 1.0)

    def service_config(self) -> dict[str, Any]:
        """The `retryPolicy` of gRPC's service config, or {} for a single attempt (gRPC wants at least 2)."""
        attempts = min(self.max_attempts, MAX_ATTEMPTS)
        if attempts < 2:
            return {}
        return {
            "maxAttempts": attempts,
            "initialBackoff": _duration(self.initial_backoff),
            "maxBackoff": _duration(max(self.max_backoff, self.initial_backoff)),
            "backoffMultiplier": max(self.multiplier, 1.0),
            "retryableStatusCodes": ["UNAVAILABLE"],
        }


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


def _duration(seconds: float) -> str:
    # The service config's durations are JSON strings of seconds ("0.1s"), above zero.
    return f"{max(seconds, 0.001):.3f}s"


def service_config(retry: RetryPolicy = DEFAULT_RETRY) -> str:
    """gRPC's service config as JSON: `round_robin` over every address, and the retry policy on `RETRIED`."""
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    policy = retry.service_config()
    if policy:
        names = [{"service": service, "method": method} for service, methods in RETRIED.items() for method in methods]
        config["methodConfig"] = [{"name": names, "retryPolicy": policy}]
    return json.dumps(config)


def channel_options(
    retry: RetryPolicy = DEFAULT_RETRY, message_limit: int | None = None, authority: str | None = None
) -> list[tuple[str, Any]]:
    """The channel arguments that make a channel fail over: the service config, retries on, and a retry buffer
    as big as the biggest message (a request bigger than the buffer is never retried)."""
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", service_config(retry)),
        ("grpc.enable_retries", 1),
        # gRPC's reconnect backoff starts at 1 s and grows to 120 s; a replica back up is used again sooner.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
        # A replica gone silent without closing its connections (its machine lost, the network cut, the process
        # frozen) is noticed by its unanswered pings: its connection drops, its streams fail over and resume,
        # and round_robin stops picking it. Pings go on through quiet watches and idle connections too.
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # What this gRPC times an unanswered ping out by (keepalive_timeout_ms alone left it at a minute).
        ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]
    if message_limit is not None:
        options += [
            ("grpc.max_receive_message_length", message_limit),
            ("grpc.max_send_message_length", message_limit),
            ("grpc.per_rpc_retry_buffer_size", message_limit),
        ]
    if authority is not None:
        options.append(("grpc.default_authority", authority))
    return options


def split(target: str) -> tuple[str, str | None]:
    """The target gRPC is given, and the authority to present (TLS checks it) when it lists several servers.

    `a:1,b:2` of IPv4 addresses becomes `ipv4:a:1,b:2`, of IPv6 ones (`[::1]:1`) `ipv6:...`; names in such a
    list are looked up once, here (one DNS name with several addresses is looked up by gRPC again and again).
    """
    target = target.strip()
    scheme, _, rest = target.partition(":")
    if "," in target and scheme in ("ipv4", "ipv6"):
        # gRPC's own list: its default authority would be the whole list, which no certificate names.
        return target, rest.lstrip("/").split(",", 1)[0]
    if "," not in target or scheme in SCHEMES:
        return target, None
    items = [item.strip() for item in target.split(",") if item.strip()]
    if not items:
        raise ValueError(f"no server address in the target `{target}`")
    addresses = [_addresses(item) for item in items]
    for family, scheme in ((socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")):
        # One family for all (gRPC's lists take one); IPv4 first, as for loopback names that have both.
        if all(any(f == family for f, _ in found) for found in addresses):
            chosen = [address for found in addresses for f, address in found if f == family]
            return f"{scheme}:" + ",".join(dict.fromkeys(chosen)), items[0]
    raise ValueError(f"the servers in `{target}` must all have IPv4 addresses, or all IPv6 ones")


def _addresses(item: str) -> list[tuple[int, str]]:
    """`host:port` as (family, `address:port`) pairs; `[v6]:port` for IPv6."""
    host, colon, port = item.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise ValueError(f"`{item}` is not HOST:PORT (several servers: HOST:PORT,HOST:PORT)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        try:
            found = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as error:
            raise ValueError(f"cannot resolve `{host}` in the target: {error}") from None
        return [(family, f"{_host(family, sockaddr[0])}:{port}") for family, _, _, _, sockaddr in found]
    family = socket.AF_INET if literal.version == 4 else socket.AF_INET6
    return [(family, f"{_host(family, host)}:{port}")]


def _host(family: int, address: str) -> str:
    return f"[{address}]" if family == socket.AF_INET6 else address


def channel(
    target: str,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    message_limit: int | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A blocking channel to `target` (one server or several), with `options` of the caller's after ours."""
    name, authority = split(target)
    arguments = [*channel_options(retry, message_limit, authority), *options]
    if credentials is not None:
        return grpc.secure_channel(name, credentials, arguments)
    return grpc.insecure_channel(name, arguments)


def aio_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
    message_limit: int | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """The `grpc.aio` channel `channel()` would make."""
    name, authority = split(target)
    arguments = [*channel_options(retry, message_limit, authority), *options]
    if credentials is not None:
        return grpc.aio.secure_channel(name, credentials, arguments)
    return grpc.aio.insecure_channel(name, arguments)
