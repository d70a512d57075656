"""A TCP proxy that loses a call's answer: the server stored the request, the caller never hears back."""

from __future__ import annotations

import asyncio


class CuttingProxy:
    """A TCP proxy in front of the server that can swallow the server's answers, then cut every connection:
    a call whose request was stored loses its answer, as when a server or a network goes away mid-call."""

    def __init__(self, upstream: str) -> None:
        self.host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        self.swallow = False
        self.frozen = False  # nothing passes either way, the connections stay open: a server gone silent
        self.connections = 0
        self.answered = 0  # bytes of the server's answers passed on: which proxy carries a stream
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, answers: bool) -> None:
            try:
                while data := await source.read(65_536):
                    if self.frozen:
                        continue
                    if not (answers and self.swallow):
                        self.answered += len(data) if answers else 0
                        sink.write(data)
                        await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def cut(self) -> None:
        self.swallow = False
        for writer in self._writers:
            writer.transport.abort()
        self._writers = []

    async def close(self) -> None:
        self.cut()
        self.server.close()
        await self.server.wait_closed()
