"""Server-sent events: `GET /tasks/events` and `GET /tasks/{uid}/events` over gRPC watches.

`app` parses the request, opens the gRPC stream and calls `changes()` or `task()`,
which wait until the server has accepted the watch, so that a refusal (unknown
task, bad cursor, bad key) is still a JSON error with its status. From then on
`EventStream` writes one event per change (`id:` the sequence number, `data:` the
task as `GET /tasks/{uid}` renders it), a comment every `heartbeat` seconds, and a
last `event: error` if the watch breaks. A client that goes away cancels the
gRPC call at once, so the server drops its watcher. `Watches` caps the streams
one HTTP client address holds (the server sees only the gateway's one channel).
`shared()` puts a client watching from now on the feed of its key and filter
(`feeds`) instead of a gRPC stream of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taskhub.errors import TaskHubError
from taskhub.gateway import query, render
from taskhub.gateway.feeds import Feeds, Follower
from taskhub.metadata import watch_cursor
from taskhub.v1 import task_service_pb2 as pb

HEARTBEAT = 15.0  # seconds; proxies commonly cut a connection idle for 30 to 60 seconds
KEEP_ALIVE = b": keep-alive\n\n"
HEADERS = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx would otherwise buffer the stream
}

Describe = Callable[[grpc.aio.AioRpcError], TaskHubError]


class Watches:
    """What the gateway's event streams share: the heartbeat, the signal that ends them at shutdown,
    and each HTTP client's count of open streams."""

    def __init__(self, heartbeat: float = HEARTBEAT, *, per_client: int = 500) -> None:
        self.heartbeat = heartbeat
        self.per_client = per_client
        self.closing = asyncio.Event()
        self._by_client: dict[str, int] = {}
        self.feeds = Feeds(change_frame)

    @property
    def open(self) -> int:
        """Event streams open now, from every client."""
        return sum(self._by_client.values())

    def close(self) -> None:
        """Ends every open stream with `event: error` (code `unavailable`) so the server can stop at once."""
        self.closing.set()

    def take(self, client: str) -> Slot:
        """One of `client`'s stream slots, or `too_many_watches` (429) when it holds them all."""
        held = self._by_client.get(client, 0)
        if held >= self.per_client:
            raise TaskHubError(
                "too_many_watches",
                f"This client already holds {self.per_client} open event streams, its limit"
                " (`--max-watchers-per-client`); close one before opening another.",
            )
        self._by_client[client] = held + 1
        return Slot(self, client)

    def _give_back(self, client: str) -> None:
        left = self._by_client[client] - 1
        if left:
            self._by_client[client] = left
        else:
            del self._by_client[client]


class Slot:
    """One open stream's place in its client's count; given back once, however the stream ends."""

    __slots__ = ("watches", "client")

    def __init__(self, watches: Watches, client: str) -> None:
        self.watches: Watches | None = watches
        self.client = client

    def release(self) -> None:
        if self.watches is not None:
            watches, self.watches = self.watches, None
            watches._give_back(self.client)


def _json(value: Any) -> str:
    # As Starlette's JSONResponse writes bodies; JSON never holds a raw line break, so one `data:` line.
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def frame(*, id: int | None = None, event: str | None = None, data: Any = None) -> bytes:
    """One SSE frame. A frame with only an `id` dispatches no event but sets the client's last event id."""
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    if data is not None:
        lines.append("data: " + _json(data))
    return ("\n".join(lines) + "\n\n").encode()


def change_frame(message: pb.WatchTasksResponse | pb.WatchTaskResponse) -> bytes:
    deleted = getattr(message, "deleted", False)
    return frame(id=message.sequence, event="deleted" if deleted else "task", data=render.task(message.task))


def last_event_id(request: Request) -> int | None:
    """The `Last-Event-ID` header as a sequence number; absent or empty is None."""
    raw = request.headers.get("last-event-id")
    if raw is None or not raw.strip():
        return None
    return query.sequence(raw, "`Last-Event-ID` header")


def head() -> Response:
    """`HEAD` on an event route: the headers of a stream, without opening a watch."""
    return Response(media_type="text/event-stream", headers=HEADERS)


async def changes(
    call: grpc.aio.UnaryStreamCall, watches: Watches, *, timeout: float, describe: Describe, slot: Slot
) -> Response:
    """`GET /tasks/events`: waits until the server accepts the watch, then streams its changes."""
    with _cancel_on_error(call, slot):
        cursor = watch_cursor(await _opening(call.initial_metadata(), timeout))
        # The server announces its cursor once the watch is open; an id-only frame hands it to the client,
        # so a reconnect before the first change resumes from there, missing nothing.
        lead = [frame(id=cursor)] if cursor is not None else []
        if cursor is None:
            # Refused (the error raises here), or an older server that announces nothing: its first change.
            first = await call.read()
            if first is grpc.aio.EOF:
                return EventStream(call, watches, describe, slot, lead=lead, ended=True)
            lead.append(change_frame(first))
            cursor = first.sequence
        return EventStream(call, watches, describe, slot, lead=lead, last_id=cursor)


async def shared(
    message: pb.WatchTasksRequest,
    metadata: tuple,
    watches: Watches,
    *,
    open_call: Callable,
    check: Callable,
    timeout: float,
    describe: Describe,
    slot: Slot,
) -> Response:
    """`GET /tasks/events` from now: follows the shared feed of this key and filter, opening it if none is.

    Its id-only lead frame hands the client where it starts, as `changes` does.
    """
    try:
        follower = await watches.feeds.follow(
            message, metadata, open_call=open_call, check=check, timeout=timeout, describe=describe
        )
    except BaseException:
        slot.release()
        raise
    return EventStream(follower, watches, describe, slot, lead=[frame(id=follower.after)], last_id=follower.after)


async def task(
    call: grpc.aio.UnaryStreamCall,
    watches: Watches,
    *,
    timeout: float,
    describe: Describe,
    seen: int | None,
    slot: Slot,
) -> Response:
    """`GET /tasks/{uid}/events`: the current state at once (unless `seen` already), then each change.

    A client that already saw the task's terminal state (`Last-Event-ID`) gets 204, which tells
    an `EventSource` to stop reconnecting.
    """
    with _cancel_on_error(call, slot):
        first = await _opening(call.read(), timeout)  # the current state, or the refusal
        if first is grpc.aio.EOF:
            return EventStream(call, watches, describe, slot, ended=True)
        if seen is not None and first.sequence <= seen:
            if render.STATUS_LABELS.get(first.task.status) in ("succeeded", "failed", "canceled"):
                call.cancel()
                slot.release()
                return Response(status_code=204, headers=HEADERS)
            return EventStream(call, watches, describe, slot, last_id=seen)
        return EventStream(call, watches, describe, slot, lead=[change_frame(first)], last_id=first.sequence)


@contextlib.contextmanager
def _cancel_on_error(call: grpc.aio.UnaryStreamCall, slot: Slot):
    try:
        yield
    except BaseException:
        call.cancel()
        slot.release()
        raise


async def _opening(awaitable, timeout: float):
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise TaskHubError(
            "unavailable", f"The gRPC server did not open the watch within {timeout:g} seconds; retry later."
        ) from None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class CallSource:
    """A watch of the client's own: each message of its gRPC stream as one frame."""

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self.call = call

    async def read(self) -> list[tuple[int, bytes]] | None:
        message = await self.call.read()
        if message is grpc.aio.EOF:  # the watch ended normally: one task reached a terminal status
            return None
        return [(message.sequence, change_frame(message))]

    def close(self) -> None:
        self.call.cancel()  # frees the server's watcher; a no-op once the call is over


class EventStream(Response):
    """A `text/event-stream` response fed by one open watch: a gRPC stream of its own, or a shared feed.

    It always listens for the client's disconnect (whatever ASGI version the
    server speaks) and closes the watch then, or when anything else ends it.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: CallSource | Follower,
        watches: Watches,
        describe: Describe,
        slot: Slot,
        *,
        lead: list[bytes] = (),
        last_id: int | None = None,
        ended: bool = False,
    ) -> None:
        if isinstance(source, grpc.aio.UnaryStreamCall):
            source = CallSource(source)
        self.source = source
        self.slot = slot
        self.watches = watches
        self.describe = describe
        self.lead = list(lead)
        self.last_id = last_id
        self.ended = ended
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)  # no body set, so no content-length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.ensure_future(_disconnected(receive))
        closing = asyncio.ensure_future(self.watches.closing.wait())
        read: asyncio.Future | None = None
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            for chunk in self.lead:
                await self._write(send, chunk)
            if isinstance(self.source, Follower) and not await self._follow(send, gone, closing):
                return  # nobody left to write to
            while not self.ended:
                read = read or asyncio.ensure_future(self.source.read())
                done, _ = await asyncio.wait(
                    {read, gone, closing}, timeout=self.watches.heartbeat, return_when=asyncio.FIRST_COMPLETED
                )
                if gone in done:
                    return  # nobody left to write to
                if read in done:
                    finished, read = read, None
                    await self._forward(send, finished)
                elif closing in done:
                    await self._write(
                        send,
                        self._error_frame(
                            TaskHubError("unavailable", "The gateway is shutting down." + self._resume_hint())
                        ),
                    )
                    self.ended = True
                else:
                    await self._write(send, KEEP_ALIVE)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write (ASGI 2.4 servers say so this way)
        finally:
            for waiter in (read, gone, closing):
                if waiter is not None:
                    waiter.cancel()
            self.source.close()
            self.slot.release()

    async def _follow(self, send: Send, gone: asyncio.Future, closing: asyncio.Future) -> bool:
        """The loop for a shared feed: one wake per batch of frames, no task or `asyncio.wait` per wake.

        The disconnect and the shutdown wake the follower instead; each wake then checks them.
        False when the client went away.
        """
        follower = self.source
        for waiter in (gone, closing):
            waiter.add_done_callback(lambda _: follower.interrupt())
        while not self.ended:
            if gone.done():
                return False
            if closing.done():
                await self._write(
                    send,
                    self._error_frame(
                        TaskHubError("unavailable", "The gateway is shutting down." + self._resume_hint())
                    ),
                )
                self.ended = True
                break
            try:
                read = await follower.read(self.watches.heartbeat)
            except TaskHubError as error:
                await self._write(send, self._error_frame(self._interrupted(error)))
                self.ended = True
                break
            if read is None:
                self.ended = True
            elif read[1]:
                await self._write(send, read[1])
                self.last_id = read[0]
            elif not (gone.done() or closing.done()):
                await self._write(send, KEEP_ALIVE)
        return True

    async def _forward(self, send: Send, read: asyncio.Future) -> None:
        try:
            frames = read.result()
        except grpc.aio.AioRpcError as error:
            await self._write(send, self._error_frame(self._interrupted(self.describe(error))))
            self.ended = True
            return
        except TaskHubError as error:  # a shared feed's end, already described
            await self._write(send, self._error_frame(self._interrupted(error)))
            self.ended = True
            return
        if frames is None:
            self.ended = True
            return
        # What a shared feed buffered goes out in one write.
        await self._write(send, b"".join(frame for _, frame in frames) if len(frames) > 1 else frames[0][1])
        self.last_id = frames[-1][0]

    def _interrupted(self, described: TaskHubError) -> TaskHubError:
        if described.code == "unavailable":
            return TaskHubError(
                "unavailable",
                "The watch was interrupted: the gRPC server stopped or cannot be reached." + self._resume_hint(),
            )
        return described

    def _resume_hint(self) -> str:
        if self.last_id is None:
            return " Reconnect to watch again."
        return f" Reconnect with `Last-Event-ID: {self.last_id}` to resume."

    @staticmethod
    def _error_frame(error: TaskHubError) -> bytes:
        return frame(event="error", data=error.to_dict())

    @staticmethod
    async def _write(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
