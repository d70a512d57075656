"""A real HTTP endpoint on 127.0.0.1 for the webhook tests: records each POST, answers as told.

`mode`: "ok" answers 200, "fail" answers 500, "silent" accepts, reads the request and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from dataclasses import dataclass


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes  # as sent (gzipped)

    @property
    def tasks(self) -> list[dict]:
        return [json.loads(line) for line in gzip.decompress(self.body).decode().splitlines()]


class Receiver:
    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.received: list[Received] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self.port = 0

    async def start(self, port: int = 0) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def uids(self) -> list[int]:
        return [task["uid"] for request in self.received for task in request.tasks]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._changed:
            self.connections += 1
            self._changed.notify_all()
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if self.mode == "silent":
                await asyncio.Event().wait()
            if self.mode == "ok":
                async with self._changed:
                    self.received.append(Received(headers, body))
                    self._changed.notify_all()
            status = b"200 OK" if self.mode == "ok" else b"500 Internal Server Error"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def wait_for(self, predicate) -> None:
        """Until `predicate(self)` holds (the test's own timeout bounds it)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self))


async def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
