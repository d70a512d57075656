"""Shared watches: SSE clients of one key and one filter, watching from now, share one gRPC stream.

Each change then costs the server one delivery and the gateway one read and one encoding,
whatever the number of clients: the frame's bytes are handed to every follower. A follower
owns a buffer bounded in bytes; one that falls that far behind is cut off with
`watch_too_slow` (after what is buffered), and never slows the feed or the other followers.
A client resuming from a `Last-Event-ID` replays through a watch of its own instead.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import grpc

from taskhub.errors import TaskHubError
from taskhub.metadata import watch_cursor
from taskhub.v1 import task_service_pb2 as pb

FOLLOWER_BYTES = 4 * 1024 * 1024  # what one SSE client may fall behind by before it is cut off
# Followers are woken at most this often, so a busy feed's frames go out several to a write:
# per client, each wake and each write costs the event loop the same whatever it carries.
FLUSH_SECONDS = 0.05

Describe = Callable[[grpc.aio.AioRpcError], TaskHubError]


def _too_slow() -> TaskHubError:
    return TaskHubError("watch_too_slow", "The client read the events too slowly and was disconnected;"
                                          " reconnect with the last event id to resume.")


class Follower:
    """One client's place on a feed: the frames not written yet, and how the feed ended for it."""

    def __init__(self, feed: Feed, after: int, limit: int) -> None:
        self.feed = feed
        self.after = after
        self.limit = limit
        self.frames: collections.deque[tuple[int, bytes]] = collections.deque()
        self.size = 0
        self.ended: TaskHubError | None = None
        self.done = False  # the feed ended without an error (the server's stream finished)
        self._wake: asyncio.Future | None = None

    def push(self, seq: int, frame: bytes) -> None:
        if self.size + len(frame) > self.limit:
            self.end(_too_slow())
            self.feed.leave(self)
            return
        self.frames.append((seq, frame))
        self.size += len(frame)

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

    async def read(self, heartbeat: float) -> list[tuple[int, bytes]] | None:
        """The frames buffered so far, all at once; [] when `heartbeat` seconds pass without any (or
        on `interrupt()`); None once the feed ended; raises how it ended for this follower."""
        if not self.frames:
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
            if not self.frames:
                if self.ended is not None:
                    raise self.ended
                return None if self.done else []
        frames = list(self.frames)
        self.frames.clear()
        self.size = 0
        return frames

    def close(self) -> None:
        self.feed.leave(self)


class Feed:
    """One gRPC WatchTasks stream and the followers it writes to."""

    def __init__(self, feeds: Feeds, key: tuple, call: grpc.aio.UnaryStreamCall, cursor: int,
                 describe: Describe) -> None:
        self.encode = feeds.encode
        self.feeds = feeds
        self.key = key
        self.call = call
        self.last = cursor
        self.describe = describe
        self.followers: set[Follower] = set()
        self._flush: asyncio.TimerHandle | None = None
        self.reader = asyncio.ensure_future(self._read())

    def follow(self) -> Follower:
        follower = Follower(self, self.last, self.feeds.follower_bytes)
        self.followers.add(follower)
        return follower

    def leave(self, follower: Follower) -> None:
        self.followers.discard(follower)
        if not self.followers:
            self.stop()

    def _wake_followers(self) -> None:
        self._flush = None
        for follower in self.followers:
            if follower.frames:
                follower._notify()

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
                self.last = message.sequence
                for follower in tuple(self.followers):
                    follower.push(message.sequence, frame)
                if self._flush is None:
                    self._flush = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._wake_followers)
        except grpc.aio.AioRpcError as failed:
            if failed.code() == grpc.StatusCode.CANCELLED and not self.followers:
                return
            error = self.describe(failed)
        except asyncio.CancelledError:
            return
        if self.feeds.open.get(self.key) is self:
            del self.feeds.open[self.key]
        if self._flush is not None:
            self._flush.cancel()
        for follower in tuple(self.followers):
            follower.end(error)  # wakes it: what is buffered goes out, then the end


class Feeds:
    """The open feeds, by key and filter."""

    def __init__(self, encode: Callable[[pb.WatchTasksResponse], bytes], follower_bytes: int = FOLLOWER_BYTES) -> None:
        self.encode = encode
        self.follower_bytes = follower_bytes
        self.open: dict[tuple, Feed] = {}

    async def follow(self, request: pb.WatchTasksRequest, metadata: tuple, *, open_call: Callable,
                     check: Callable, timeout: float, describe: Describe) -> Follower:
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
                    raise TaskHubError("unavailable", f"The gRPC server did not open the watch within {timeout:g}"
                                                      " seconds; retry later.") from None
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
