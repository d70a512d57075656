"""gRPC metadata that travels beside the protos, shared by server, gateway and client.

`WATCH_CURSOR`: the initial metadata of a `WatchTasks` stream, sent by the server
once the watch is subscribed and its cursor checked, before any change. Its
value is the sequence number the watch starts after, so a caller knows the
watch is open (the gateway then answers 200) and can resume from there without
a gap even when the stream breaks before its first change.

`GATEWAY_TOKEN`: sent by the gateway that `taskhub serve` starts beside the server, on
the watches it opens for its HTTP clients. The server then does not count them all as
its one connection: the gateway limits watches per HTTP client itself.
"""

from __future__ import annotations

WATCH_CURSOR = "taskhub-watch-cursor"
GATEWAY_TOKEN = "taskhub-gateway-token"


def watch_cursor(initial_metadata) -> int | None:
    """The cursor a `WatchTasks` stream's initial metadata announces, or None (an older server)."""
    for key, value in initial_metadata or ():
        if key == WATCH_CURSOR and value.isdigit():
            return int(value)
    return None
