"""Server-sent events: `GET /tasks/events` and `GET /tasks/{uid}/events` through a real uvicorn.

The gateway runs under uvicorn on 127.0.0.1 in front of the in-process server (no
background loop: the tests move tasks with helpers.start/finish and `tick()`), and
httpx reads the streams as any HTTP client would, parsed by the small SSE reader below.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import httpx
import pytest

import helpers
from gateway_bodies import LINK
from taskhub.gateway.serving import GatewayServer
from taskhub.server import app

MOVIE = {"type": "documentAdditionOrUpdate", "indexUid": "movies", "details": {"receivedDocuments": 3}}
BOOK = {"type": "indexCreation", "indexUid": "books"}


class SSE:
    """Reads a text/event-stream response frame by frame, as the SSE spec cuts it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def frame(self, timeout: float = 5) -> dict | None:
        """The next frame: its fields (`data` parsed as JSON), or `{"comment": ...}`; None at the end."""
        fields: dict = {}
        while True:
            try:
                line = await asyncio.wait_for(anext(self.lines), timeout)
            except StopAsyncIteration:
                assert not fields, f"the stream ended inside a frame: {fields}"
                return None
            if line == "":
                if fields:
                    return fields
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                return {"comment": value}
            fields[name] = json.loads(value) if name == "data" else value

    async def event(self, timeout: float = 5) -> dict | None:
        """The next dispatched event: comments and id-only frames are skipped."""
        while True:
            frame = await self.frame(timeout)
            if frame is None or "data" in frame:
                return frame

    async def events(self, count: int) -> list[dict]:
        return [await self.event() for _ in range(count)]


@pytest.fixture
async def live(service):
    """A real uvicorn gateway; its heartbeat is long so that no comment comes unless a test asks."""
    gateway = await GatewayServer.start(service.grpc_target, "127.0.0.1:0", grace=1, heartbeat=30)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.port}", timeout=10, limits=httpx.Limits(max_connections=200)
    ) as http:
        yield http
    await gateway.stop()


async def open_stream(http: httpx.AsyncClient, path: str, **headers: str) -> tuple[httpx.Response, SSE]:
    response = await http.send(http.build_request("GET", path, headers=headers), stream=True)
    assert response.status_code == 200, (await response.aread()).decode()
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    return response, SSE(response)


async def enqueue(http: httpx.AsyncClient, body: dict) -> int:
    response = await http.post("/tasks", json=body)
    assert response.status_code == 202, response.text
    return response.json()["taskUid"]


async def current(http: httpx.AsyncClient, uid: int) -> dict:
    return (await http.get(f"/tasks/{uid}")).json()


async def watchers(service, count: int) -> None:
    for _ in range(500):
        if service.scheduler.hub.watchers == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{service.scheduler.hub.watchers} server watchers, expected {count}")


def error(code: str, message: str, type_: str = "invalid_request") -> dict:
    return {"message": message, "code": code, "type": type_, "link": LINK + code}


async def test_one_task_streams_each_state_then_ends(live, service):
    uid = await enqueue(live, MOVIE)
    response, stream = await open_stream(live, f"/tasks/{uid}/events")
    # The current state at once, in the exact shape of GET /tasks/{uid}.
    assert await stream.frame() == {"id": "1", "event": "task", "data": await current(live, uid)}
    await helpers.start(service, uid)
    assert await stream.frame() == {"id": "2", "event": "task", "data": await current(live, uid)}
    await helpers.finish(service, uid, details={"indexedDocuments": 3})
    done = await stream.frame()
    assert done == {"id": "3", "event": "task", "data": await current(live, uid)}
    assert (done["data"]["status"], done["data"]["details"]) == (
        "succeeded",
        {"receivedDocuments": 3, "indexedDocuments": 3},
    )
    assert await stream.frame() is None  # the stream ends after the terminal status
    await response.aclose()
    await watchers(service, 0)


async def test_a_finished_task_is_sent_once_and_a_client_that_saw_it_gets_204(live, service):
    uid = await enqueue(live, BOOK)
    await live.post("/tasks/cancel?uids=0")
    await service.scheduler.tick()
    response, stream = await open_stream(live, f"/tasks/{uid}/events")
    canceled = await stream.frame()
    assert canceled == {"id": canceled["id"], "event": "task", "data": await current(live, uid)}
    assert (canceled["data"]["status"], canceled["data"]["canceledBy"]) == ("canceled", 1)
    assert await stream.frame() is None
    # An EventSource reconnecting after the last state is told to stop: 204 No Content.
    again = await live.get(f"/tasks/{uid}/events", headers={"Last-Event-ID": canceled["id"]})
    assert (again.status_code, again.content) == (204, b"")


async def test_a_filter_streams_every_matching_change_in_commit_order(live, service):
    response, stream = await open_stream(live, "/tasks/events?indexUids=movies&types=documentAdditionOrUpdate")
    # First an id-only frame, the sequence the watch starts after: no event, but a reconnect resumes from it.
    assert await stream.frame() == {"id": "0"}
    movie = await enqueue(live, MOVIE)  # sequence 1
    await enqueue(live, BOOK)  # 2: not matched
    assert await stream.frame() == {"id": "1", "event": "task", "data": await current(live, movie)}
    await helpers.start(service, movie)  # 3
    assert await stream.frame() == {"id": "3", "event": "task", "data": await current(live, movie)}
    await helpers.finish(
        service, movie, error={"message": "boom", "code": "internal", "type": "internal", "link": LINK + "internal"}
    )  # 4
    failed = await stream.frame()
    assert failed == {"id": "4", "event": "task", "data": await current(live, movie)}
    assert failed["data"]["error"] == error("internal", "boom", "internal")
    # A deletion is an `event: deleted` carrying the task's last state, without its details and error.
    await live.delete(f"/tasks?uids={movie}")
    await service.scheduler.tick()
    gone = {**failed["data"], "details": None, "error": None}
    assert await stream.frame() == {"id": "7", "event": "deleted", "data": gone}  # 5, 6: the taskDeletion
    assert (await live.get(f"/tasks/{movie}")).status_code == 404
    await response.aclose()


async def test_last_event_id_resumes_with_every_later_change_once(live, service):
    response, stream = await open_stream(live, "/tasks/events")
    assert await stream.frame() == {"id": "0"}
    await enqueue(live, MOVIE)
    seen = await stream.event()
    await response.aclose()
    # Changes while nobody watches.
    await enqueue(live, BOOK)
    await helpers.start(service, 0)
    await helpers.start(service, 1)
    response, stream = await open_stream(live, "/tasks/events", **{"Last-Event-ID": seen["id"]})
    assert await stream.frame() == {"id": "1"}
    replayed = await stream.events(3)
    assert [(e["id"], e["data"]["uid"], e["data"]["status"]) for e in replayed] == [
        ("2", 1, "enqueued"),
        ("3", 0, "processing"),
        ("4", 1, "processing"),
    ]
    # ...then live changes, without a gap or a repeat.
    await helpers.finish(service, 1)
    live_event = await stream.event()
    assert (live_event["id"], live_event["data"]["uid"], live_event["data"]["status"]) == ("5", 1, "succeeded")
    await response.aclose()

    # A client that saw no event yet resumes from the id-only frame it got first.
    response, stream = await open_stream(live, "/tasks/events?statuses=succeeded")
    opened = await stream.frame()
    assert opened == {"id": "5"}
    await response.aclose()
    await helpers.finish(service, 0)
    response, stream = await open_stream(live, "/tasks/events?statuses=succeeded", **{"Last-Event-ID": "5"})
    assert (await stream.frame(), (await stream.event())["id"]) == ({"id": "5"}, "6")
    await response.aclose()

    # `?after=` starts a first connection from a known id; a reconnect's Last-Event-ID wins over it.
    response, stream = await open_stream(live, "/tasks/events?after=2&indexUids=movies")
    assert await stream.frame() == {"id": "2"}
    assert [(e["id"], e["data"]["uid"], e["data"]["status"]) for e in await stream.events(2)] == [
        ("3", 0, "processing"),
        ("6", 0, "succeeded"),
    ]
    await response.aclose()
    response, stream = await open_stream(live, "/tasks/events?after=2&indexUids=movies", **{"Last-Event-ID": "3"})
    assert (await stream.frame(), (await stream.event())["id"]) == ({"id": "3"}, "6")
    await response.aclose()


async def test_many_concurrent_streams_see_the_same_changes(live, service):
    opened = [await open_stream(live, "/tasks/events") for _ in range(40)]
    await watchers(service, 1)  # streams of one key and filter share one server watch
    for _ in range(3):
        await enqueue(live, MOVIE)
    expected = [{"id": str(uid + 1), "event": "task", "data": await current(live, uid)} for uid in range(3)]
    got = await asyncio.gather(*(stream.events(3) for _, stream in opened))
    assert all(events == expected for events in got)
    for response, _ in opened:
        await response.aclose()
    await watchers(service, 0)


async def test_a_client_that_disconnects_frees_the_server_watcher(live, service):
    await enqueue(live, MOVIE)
    everything, _ = await open_stream(live, "/tasks/events")
    one, stream = await open_stream(live, "/tasks/0/events")
    await stream.event()
    await watchers(service, 2)
    # Idle streams, a heartbeat 30 s away: the gateway notices the disconnect itself, not on a failed write.
    started = time.monotonic()
    await everything.aclose()
    await one.aclose()
    await watchers(service, 0)
    assert time.monotonic() - started < 3
    await helpers.start(service, 0)  # nothing left to deliver it to; the server carries on
    assert (await current(live, 0))["status"] == "processing"


async def test_idle_streams_get_a_comment_heartbeat(service):
    gateway = await GatewayServer.start(service.grpc_target, "127.0.0.1:0", grace=1, heartbeat=0.1)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as http:
            response, stream = await open_stream(http, "/tasks/events")
            assert await stream.frame() == {"id": "0"}
            assert [await stream.frame(timeout=2) for _ in range(2)] == [{"comment": "keep-alive"}] * 2
            await http.post("/tasks", json=MOVIE)
            event = await stream.event()
            assert (event["id"], event["event"]) == ("1", "task")
            await response.aclose()
    finally:
        await gateway.stop()


async def test_bad_requests_are_json_errors_before_any_stream(live, config, clock):
    async def refused(path: str, **headers: str) -> tuple[int, dict]:
        response = await live.get(path, headers=headers)
        assert response.headers["content-type"] == "application/json"
        return response.status_code, response.json()

    # The filters parse as GET /tasks's do, with the same errors...
    for query in (
        "statuses=doggo",
        "types=doggo",
        "uids=1,x",
        "afterEnqueuedAt=doggo",
        "canceledBy=-1",
        "indexUids=the%20good%20doggo",
    ):
        listed = await live.get(f"/tasks?{query}")
        assert await refused(f"/tasks/events?{query}") == (400, listed.json()), query
    # ...but pages are not a thing here.
    status, body = await refused("/tasks/events?limit=10")
    assert (status, body["code"]) == (400, "bad_request")
    assert body["message"].startswith("Unknown parameter `limit`: expected one of `uids`, `canceledBy`")
    assert await refused("/tasks/nope/events") == (
        400,
        error("invalid_task_uids", "Task uid `nope` is invalid. It should only contain numeric characters."),
    )
    assert await refused("/tasks/9/events") == (404, error("task_not_found", "Task `9` not found."))

    bad_id = (
        "Invalid `Last-Event-ID` header: `{}` is not a sequence number (the non-negative integer `id` of an event)."
    )
    for value in ("abc", "-1", "1.5", str(2**64)):
        assert await refused("/tasks/events", **{"Last-Event-ID": value}) == (
            400,
            error("invalid_watch_cursor", bad_id.format(value)),
        ), value
        assert (await refused("/tasks/0/events", **{"Last-Event-ID": value}))[1]["code"] == "invalid_watch_cursor"
    assert await refused("/tasks/events", **{"Last-Event-ID": "7"}) == (
        400,
        error("invalid_watch_cursor", "Sequence number `7` is ahead of the newest change (`0`)."),
    )
    assert await refused("/tasks/events?after=x") == (
        400,
        error(
            "invalid_watch_cursor",
            ("Invalid parameter `after`: `x` is not a sequence number (the non-negative integer `id` of an event)."),
        ),
    )
    assert await refused("/tasks/events?after=7") == (
        400,
        error("invalid_watch_cursor", "Sequence number `7` is ahead of the newest change (`0`)."),
    )


async def test_a_cursor_older_than_the_kept_history_is_400(config, clock):
    service = await app.start(dataclasses.replace(config, watch_retention=2), background=False, clock=clock)
    gateway = await GatewayServer.start(service.grpc_target, "127.0.0.1:0", grace=1)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as http:
            for _ in range(5):
                await enqueue(http, BOOK)
            clock.now += 20_000_000
            await service.scheduler.tick()  # keeps the newest 2 changes: 4 and 5
            response = await http.get("/tasks/events", headers={"Last-Event-ID": "2"})
            assert (response.status_code, response.json()) == (
                400,
                error(
                    "invalid_watch_cursor",
                    "Sequence number `2` is older than the kept history, which starts at `4`;"
                    " list the tasks again and watch from now.",
                ),
            )
            response, stream = await open_stream(http, "/tasks/events", **{"Last-Event-ID": "3"})
            assert [e["id"] for e in await stream.events(2)] == ["4", "5"]
            await response.aclose()
    finally:
        await gateway.stop()
        await service.stop(0)


async def test_a_watch_that_breaks_mid_stream_ends_with_an_error_event(live, service):
    await enqueue(live, MOVIE)
    response, stream = await open_stream(live, "/tasks/events")
    single, single_stream = await open_stream(live, "/tasks/0/events")
    assert (await single_stream.event())["id"] == "1"
    assert await stream.frame() == {"id": "1"}
    await helpers.start(service, 0)
    assert (await stream.event())["id"] == "2"
    assert (await single_stream.event())["id"] == "2"
    service.scheduler.begin_shutdown()  # the server ends every watch with UNAVAILABLE
    message = (
        "The watch was interrupted: the gRPC server stopped or cannot be reached."
        " Reconnect with `Last-Event-ID: 2` to resume."
    )
    assert await stream.frame() == {"event": "error", "data": error("unavailable", message, "system")}
    assert await stream.frame() is None
    assert await single_stream.frame() == {"event": "error", "data": error("unavailable", message, "system")}
    assert await single_stream.frame() is None


async def test_stopping_the_gateway_ends_open_streams_at_once(service):
    gateway = await GatewayServer.start(service.grpc_target, "127.0.0.1:0", grace=10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as http:
        response, stream = await open_stream(http, "/tasks/events")
        assert await stream.frame() == {"id": "0"}
        started = time.monotonic()
        await gateway.stop()
        assert time.monotonic() - started < 3  # not the 10 s grace
        assert await stream.frame() == {
            "event": "error",
            "data": error(
                "unavailable", "The gateway is shutting down. Reconnect with `Last-Event-ID: 0` to resume.", "system"
            ),
        }
        assert await stream.frame() is None
    await watchers(service, 0)


async def test_the_authorization_header_travels_to_the_server(config, clock):
    service = await app.start(
        dataclasses.replace(config, master_key="master-key-0123456789"), background=False, clock=clock
    )
    gateway = await GatewayServer.start(service.grpc_target, "127.0.0.1:0", grace=1)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as http:
            for path in ("/tasks/events", "/tasks/0/events"):
                response = await http.get(path)
                assert (response.status_code, response.json()["code"]) == (401, "missing_authorization_header")
                response = await http.get(path, headers={"Authorization": "Bearer wrong"})
                assert (response.status_code, response.json()["code"]) == (403, "invalid_api_key")
            bearer = {"Authorization": "Bearer master-key-0123456789"}
            response, stream = await open_stream(http, "/tasks/events", **bearer)
            await http.post("/tasks", json=MOVIE, headers=bearer)
            assert (await stream.event())["data"]["uid"] == 0
            await response.aclose()
            response, stream = await open_stream(http, "/tasks/0/events", **bearer)
            assert (await stream.event())["data"]["status"] == "enqueued"
            await response.aclose()
    finally:
        await gateway.stop()
        await service.stop(0)


async def test_head_answers_the_stream_headers_without_watching(live, service):
    response = await live.head("/tasks/events?statuses=enqueued")
    assert (response.status_code, response.headers["content-type"]) == (200, "text/event-stream; charset=utf-8")
    assert (await live.head("/tasks/events?statuses=doggo")).status_code == 400
    assert service.scheduler.hub.watchers == 0


async def test_a_feed_that_cannot_render_a_change_ends_its_streams_and_the_next_client_starts_afresh(
    service, monkeypatch
):
    from taskhub.gateway import events

    rendered = events.change_frame
    failures = []

    def change_frame(message):
        if message.task.status == 2 and not failures:  # processing: this one change cannot be rendered, once
            failures.append(message.sequence)
            raise ValueError("cannot render")
        return rendered(message)

    monkeypatch.setattr(events, "change_frame", change_frame)
    gateway = await GatewayServer.start(service.grpc_target, "127.0.0.1:0", grace=1, heartbeat=30)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http:
            await enqueue(http, MOVIE)
            response, stream = await open_stream(http, "/tasks/events")
            await helpers.start(service, 0)
            ended = await stream.event()
            assert ended["event"] == "error" and ended["data"]["code"] == "internal"
            assert await stream.frame() is None
            await response.aclose()
            # The dead feed is gone: the next client of the same filter gets a live one.
            response, stream = await open_stream(http, "/tasks/events")
            await helpers.finish(service, 0)
            assert (await stream.event())["data"]["status"] == "succeeded"
            await response.aclose()
    finally:
        await gateway.stop()
