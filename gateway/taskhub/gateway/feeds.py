"""Shared watches: SSE clients of one key and one filter, watching from now, share one gRPC stream.

Each change then costs the server one delivery and the gateway one read, one encoding and
one log entry, whatever the number of clients: every follower writes the same bytes from
its place in the log. One that falls more than `follower_bytes` behind is cut off with
`watch_too_slow` (after what it had), and never slows the feed or the other followers.
A client resuming from a `Last-Event-ID` replays through a watch of its own instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc

from taskhub.errors import TaskHubError
from taskhub.metadata import watch_cursor
from taskhub.v1 import task_service_pb2 as pb

log = logging.getLogger(__name__)

FOLLOWER_BYTES = 4 * 1024 * 1024  # what one SSE client may fall behind by before it is cut off
# Followers are woken at most this often, so a busy feed's frames go out several to a write:
# per client, each wake and each write costs the event loop the same whatever it carries.
FLUSH_SECONDS = 0.05
# Followers woken per loop turn. A unary call takes several turns of the loop (its request, the
# handler, its answer), and waits at each behind that turn's writes: one client's write, not a dozen.
WAKE_CHUNK = 1

Describe = Callable[[grpc.aio.AioRpcError], TaskHubError]


def _too_slow() -> TaskHubError:
    return TaskHubError(
        "watch_too_slow",
        "The client read the events too slowly and was disconnected; reconnect with the last event id to resume.",
    )


class Follower:
    """One client's place in its feed's log, and how the feed ended for it."""

    def __init__(self, feed: Feed, after: int) -> None:
        self.feed = feed
        self.after = after
        self.position = feed.base + len(feed.log)  # the index in the feed's log of its next frame
        self.written = feed.total  # the feed's byte count up to `position`
        self.tail = b""  # when cut off: what it had not written yet, copied out of the log
        self.cut_off = False
        self.ended: TaskHubError | None = None
        self.done = False  # the feed ended without an error (the server's stream finished)
        self._wake: asyncio.Future | None = None

    def _pending(self) -> bool:
        if self.cut_off:  # out of the log: only what was copied out
            return bool(self.tail)
        return self.position < self.feed.base + len(self.feed.log)

    def cut(self, error: TaskHubError) -> None:
        """Ends it with `error` once what it had not written yet (copied out now) is written."""
        start = self.position - self.feed.base
        self.tail = b"".join(frame for _, frame, _ in self.feed.log[start:])
        self.last = self.feed.log[-1][0] if len(self.feed.log) > start else None
        self.cut_off = True
        self.ended = error
        self._notify()

    def end(self, error: TaskHubError | None) -> None:
        if error is None:
            self.done = True
        elif self.ended is None:
            self.ended = error
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def interrupt(self) -> None:
        """Wakes a waiting `read()` empty-handed: its reader has something else to look at."""
        self._notify()

    async def read(self, heartbeat: float) -> tuple[int, bytes] | None:
        """Every frame not written yet, as one chunk with the last one's sequence number; (0, b"") when
        `heartbeat` seconds pass without any (or on `interrupt()`); None once the feed ended; raises
        how it ended for this follower once what it had is written."""
        if not self._pending():
            if self.ended is not None:
                raise self.ended
            if self.done:
                return None
            loop = asyncio.get_running_loop()
            self._wake = loop.create_future()
            timer = loop.call_later(heartbeat, self._notify)
            try:
                await self._wake
            finally:
                timer.cancel()
                self._wake = None
            if not self._pending():
                if self.ended is not None:
                    raise self.ended
                return None if self.done else (0, b"")
        if self.tail:
            chunk, self.tail = (self.last, self.tail), b""
            return chunk
        feed = self.feed
        start = self.position - feed.base
        new = feed.log[start:]
        self.position += len(new)
        self.written = new[-1][2]
        return new[-1][0], b"".join(frame for _, frame, _ in new) if len(new) > 1 else new[0][1]

    def close(self) -> None:
        self.feed.leave(self)


class Feed:
    """One gRPC WatchTasks stream, the log of its frames not yet written to every follower, and the followers.

    Each change is one `(sequence, frame, bytes so far)` entry in the log, whatever the number of
    followers: they hold positions in it, so a change allocates nothing per client.
    """

    def __init__(
        self, feeds: Feeds, key: tuple, call: grpc.aio.UnaryStreamCall, cursor: int, describe: Describe
    ) -> None:
        self.feeds = feeds
        self.encode = feeds.encode
        self.key = key
        self.call = call
        self.last = cursor
        self.describe = describe
        self.log: list[tuple[int, bytes, int]] = []
        self.base = 0  # the index of log[0] since the feed opened
        self.total = 0  # bytes of every frame since the feed opened
        self.followers: set[Follower] = set()
        self._flush: asyncio.TimerHandle | None = None
        self.reader = asyncio.ensure_future(self._read())

    def follow(self) -> Follower:
        follower = Follower(self, self.last)
        self.followers.add(follower)
        return follower

    def leave(self, follower: Follower) -> None:
        self.followers.discard(follower)
        if not self.followers:
            self.stop()

    def _wake_followers(self) -> None:
        """Every flush: cuts whoever is too far behind, drops what all have written, wakes the rest."""
        self._flush = None
        limit = self.feeds.follower_bytes
        for follower in [f for f in self.followers if self.total - f.written > limit]:
            follower.cut(_too_slow())
            self.followers.discard(follower)
        if not self.followers:
            self.stop()
            return
        oldest = min(f.position for f in self.followers)
        if oldest > self.base:
            del self.log[: oldest - self.base]
            self.base = oldest
        self._wake_chunk([f for f in self.followers if f._pending()], 0)

    def _wake_chunk(self, waiting: list[Follower], start: int) -> None:
        # WAKE_CHUNK at a time, each chunk a loop turn later: the calls that arrive meanwhile (a GetTask)
        # are not queued behind every client's write.
        for follower in waiting[start : start + WAKE_CHUNK]:
            follower._notify()
        if start + WAKE_CHUNK < len(waiting):
            asyncio.get_running_loop().call_soon(self._wake_chunk, waiting, start + WAKE_CHUNK)

    def stop(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        if self.feeds.open.get(self.key) is self:
            del self.feeds.open[self.key]
        self.call.cancel()
        self.reader.cancel()

    async def _read(self) -> None:
        error: TaskHubError | None = None
        try:
            async for message in self.call:
                frame = self.encode(message)
                self.total += len(frame)
                self.log.append((message.sequence, frame, self.total))
                self.last = message.sequence
                if self._flush is None:
                    self._flush = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._wake_followers)
        except grpc.aio.AioRpcError as failed:
            if failed.code() == grpc.StatusCode.CANCELLED and not self.followers:
                return
            error = self.describe(failed)
        except asyncio.CancelledError:
            return
        except Exception:  # whatever it was, the followers must not wait on a reader that is gone
            log.exception("a shared watch feed failed")
            error = TaskHubError("internal", "internal error")
        if self.feeds.open.get(self.key) is self:
            del self.feeds.open[self.key]
        if self._flush is not None:
            self._flush.cancel()
        for follower in tuple(self.followers):
            follower.end(error)  # wakes it: what is in the log goes out, then the end


class Feeds:
    """The open feeds, by key and filter."""

    def __init__(self, encode: Callable[[pb.WatchTasksResponse], bytes], follower_bytes: int = FOLLOWER_BYTES) -> None:
        self.encode = encode
        self.follower_bytes = follower_bytes
        self.open: dict[tuple, Feed] = {}

    async def follow(
        self,
        request: pb.WatchTasksRequest,
        metadata: tuple,
        *,
        open_call: Callable,
        check: Callable,
        timeout: float,
        describe: Describe,
    ) -> Follower:
        """A follower of the feed for this key and filter, opening it when there is none.

        Joining an open feed still asks the server whether the key may read these tasks
        (`check`), so a key deleted since the feed opened is refused as it would be alone.
        """
        key = (tuple(metadata), request.filter.SerializeToString(deterministic=True))
        feed = self.open.get(key)
        if feed is not None:
            await check()
            feed = self.open.get(key)  # it may have ended meanwhile
        if feed is None:
            call = open_call()
            try:
                try:
                    cursor = watch_cursor(await asyncio.wait_for(call.initial_metadata(), timeout))
                except TimeoutError:
                    raise TaskHubError(
                        "unavailable",
                        f"The gRPC server did not open the watch within {timeout:g} seconds; retry later.",
                    ) from None
                if cursor is None:  # refused: the error raises here
                    await call.read()
                    raise TaskHubError("unavailable", "The gRPC server did not say where the watch starts.")
            except BaseException:
                call.cancel()
                raise
            feed = self.open.get(key)
            if feed is None:
                feed = self.open[key] = Feed(self, key, call, cursor, describe)
            else:
                call.cancel()  # another client opened the same feed meanwhile
        return feed.follow()
