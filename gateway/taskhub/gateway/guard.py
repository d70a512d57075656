"""Cross-site protection: a web page elsewhere must not drive the queue through a gateway it can reach.

Two checks, before any route. The `Host` header must name this gateway (its listen address or
localhost with its port, or a configured name), so a name rebound to 127.0.0.1 by DNS finds
nothing. A state-changing request (anything but GET, HEAD, OPTIONS) that carries an `Origin`
must come from the gateway's own origin or a configured one: browsers send `Origin` on such
requests, even on the simple ones that need no preflight; curl and the SDKs send none.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from taskhub.errors import TaskHubError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
# A health probe may call the gateway by any address (a load balancer's, a pod's IP); it tells nothing.
ANY_HOST_PATHS = frozenset({"/health"})
_WILDCARDS = ("0.0.0.0", "::", "")


def split_list(text: str | None) -> list[str]:
    """`a, b,c` -> ["a", "b", "c"]: the comma lists of `--http-allowed-hosts` and `--http-allowed-origins`."""
    return [item.strip().lower() for item in (text or "").split(",") if item.strip()]


def _name_and_port(netloc: str, default_port: int | None) -> tuple[str, int | None] | None:
    """`host:port`, `host`, `[::1]:port` -> (lower-case name, port); None when malformed."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        end = netloc.find("]")
        name, rest = netloc[: end + 1], netloc[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, sep, port_text = netloc.partition(":")
        port_text = port_text if sep else None
    if not name or name == "[]":
        return None
    if port_text is None:
        return name, default_port
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


def listen_hosts(host: str, port: int) -> list[str]:
    """The names a gateway listening on `host:port` answers to without configuration."""
    names = [f"{name}:{port}" for name in LOCAL_NAMES]
    if host not in _WILDCARDS:  # a wildcard address is no name anyone reaches it by
        names.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return names


class Guard:
    """ASGI middleware: the Host check (when `allowed_hosts` is given) and the Origin check on writes.

    `allowed_hosts`: `name:port` (that port only) or `name` (any port), or `*` for any;
    None turns the Host check off (an app made without knowing where it listens).
    `allowed_origins`: full origins (`https://admin.example`) besides the gateway's own, or `*`.
    """

    def __init__(self, app, allowed_hosts: Iterable[str] | None = None, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        hosts = None if allowed_hosts is None else [h.strip().lower() for h in allowed_hosts]
        self.any_host = hosts is None or "*" in hosts
        self.hosts = {parsed for h in hosts or () if h != "*" and (parsed := _name_and_port(h, None))}
        self.named = {name for name, port in self.hosts if port is None}
        origins = {o.strip().lower().rstrip("/") for o in allowed_origins}
        self.any_origin = "*" in origins
        self.origins = origins

    def _host_allowed(self, host: str, scheme: str) -> bool:
        parsed = _name_and_port(host, 443 if scheme == "https" else 80)
        return parsed is not None and (parsed in self.hosts or parsed[0] in self.named)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if self.any_origin or origin in self.origins:
            return True
        # The gateway's own origin: the page was served under the very name and port this request was
        # sent to. The scheme is left out, as TLS may end at a proxy in front.
        scheme, sep, netloc = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and bool(host) and netloc == host.strip().lower()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        error = None
        if (
            not self.any_host
            and scope["path"] not in ANY_HOST_PATHS
            and not self._host_allowed(host, scope.get("scheme", "http"))
        ):
            error = TaskHubError(
                "host_not_allowed",
                f"The `Host` header `{host}` does not name this gateway, so the request was refused (a guard"
                " against DNS rebinding). To reach it under that name, behind a proxy for instance, add the name"
                " to `--http-allowed-hosts` (`TASKHUB_HTTP_ALLOWED_HOSTS`).",
            )
        elif (
            scope["method"] not in SAFE_METHODS
            and (origin := headers.get("origin")) is not None
            and not self._origin_allowed(origin, host)
        ):
            error = TaskHubError(
                "cross_origin_request_refused",
                f"A `{scope['method']}` request from the web page at `{origin}` was refused: the gateway takes"
                " requests that change something from its own origin only (a guard against cross-site requests)."
                " To allow another origin, add it to `--http-allowed-origins` (`TASKHUB_HTTP_ALLOWED_ORIGINS`).",
            )
        if error is None:
            await self.app(scope, receive, send)
            return
        await JSONResponse(error.to_dict(), status_code=error.kind.http_status)(scope, receive, send)
