"""One webhook POST over HTTP/1.1, on the event loop, with the SSRF guard between resolving and connecting.

Hand-written on asyncio streams rather than through an HTTP library, for two things a library hides: the
address connected to is one the guard checked (never a second resolution), and every step (resolve,
connect, send, read the status line) runs under one deadline, so an endpoint that accepts the connection
and never answers costs its own delivery that deadline and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from taskhub.server.rules.ip_policy import IpPolicy


class Refused(Exception):
    """The target is outside the allowed networks: nothing was sent."""


def _line(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode("latin-1")


async def post(
    url: str, headers: dict[str, str], body: bytes, *, policy: IpPolicy, timeout: float, user_agent: str
) -> int:
    """POSTs `body` (gzipped ndjson) with `headers`; answers the response's status code.

    Raises Refused, OSError (resolution, connection, TLS) or TimeoutError past `timeout` seconds.
    """
    parts = urlsplit(url)
    https = parts.scheme.lower() == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    async with asyncio.timeout(timeout):
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        reasons = []
        address = None
        for *_, sockaddr in infos:
            candidate = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            reason = policy.refusal(candidate)
            if reason is None:
                address = str(candidate)
                break
            reasons.append(reason)
        if address is None:
            raise Refused(reasons[0] if reasons else f"`{host}` resolves to no address")
        context = ssl.create_default_context() if https else None
        reader, writer = await asyncio.open_connection(
            address, port, ssl=context, server_hostname=host if https else None
        )
        try:
            path = parts.path or "/"
            if parts.query:
                path += "?" + parts.query
            authority = parts.netloc.rsplit("@", 1)[-1]
            head = [f"POST {path} HTTP/1.1\r\n".encode("latin-1"), _line("Host", authority)]
            sent = {"content-type", "content-encoding", "content-length", "host", "connection"}
            head += [
                _line("Content-Type", "application/x-ndjson"),
                _line("Content-Encoding", "gzip"),
                _line("Content-Length", str(len(body))),
                _line("Connection", "close"),
            ]
            if not any(name.lower() == "user-agent" for name in headers):
                head.append(_line("User-Agent", user_agent))
            head += [_line(name, value) for name, value in headers.items() if name.lower() not in sent]
            writer.write(b"".join(head) + b"\r\n" + body)
            await writer.drain()
            status = await reader.readline()
            fields = status.split(None, 2)
            if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
                raise OSError(f"not an HTTP response: {status[:80]!r}")
            return int(fields[1])
        finally:
            writer.close()
