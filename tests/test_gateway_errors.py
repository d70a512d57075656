"""Every error of SPEC §3's table on each route, as whole bodies; never a 500, never a trace."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from gateway_bodies import (
    ERROR_KEYS,
    INDEX_UID_RULE,
    LIST_FILTERS,
    MATCHING_FILTERS,
    STATUSES,
    TYPES,
    error,
    missing_filters,
)
from taskhub.gateway.app import create_app, edge

ROUTES = [("GET", "/tasks"), ("POST", "/tasks/cancel"), ("DELETE", "/tasks")]
DATE_PARAMETERS = [
    "afterEnqueuedAt",
    "beforeEnqueuedAt",
    "afterStartedAt",
    "beforeStartedAt",
    "afterFinishedAt",
    "beforeFinishedAt",
]


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def not_uint(code: str, location: str, value: str) -> dict:
    return error(code, f"Invalid value in parameter `{location}`: could not parse `{value}` as a positive integer")


def not_a_date(name: str, value: str) -> dict:
    return error(
        f"invalid_task_{_snake(name)}",
        f"Invalid value in parameter `{name}`: `{value}` is an invalid"
        " date-time. It should follow the YYYY-MM-DD or RFC 3339 date-time format.",
    )


FILTER_ERRORS = [
    ("uids=doggo", not_uint("invalid_task_uids", "uids", "doggo")),
    ("uids=1,dogo", not_uint("invalid_task_uids", "uids[1]", "dogo")),
    ("uids=cat,*,dog", not_uint("invalid_task_uids", "uids[0]", "cat")),
    ("uids=-1", not_uint("invalid_task_uids", "uids", "-1")),
    ("uids=4294967296", not_uint("invalid_task_uids", "uids", "4294967296")),
    ("uids=%201", not_uint("invalid_task_uids", "uids", " 1")),
    ("canceledBy=doggo", not_uint("invalid_task_canceled_by", "canceledBy", "doggo")),
    ("canceledBy=,1,,x", not_uint("invalid_task_canceled_by", "canceledBy[1]", "x")),
    (
        "statuses=doggo",
        error(
            "invalid_task_statuses",
            "Invalid value in parameter `statuses`: `doggo` is not a"
            f" valid task status. Available statuses are {STATUSES}.",
        ),
    ),
    (
        "statuses=enqueued,finished",
        error(
            "invalid_task_statuses",
            "Invalid value in parameter `statuses[1]`:"
            f" `finished` is not a valid task status."
            f" Available statuses are {STATUSES}.",
        ),
    ),
    (
        "types=createIndex",
        error(
            "invalid_task_types",
            f"Invalid value in parameter `types`: `createIndex` is not a valid task type. Available types are {TYPES}.",
        ),
    ),
    (
        "indexUids=the%20good%20doggo",
        error(
            "invalid_task_index_uids",
            f"Invalid value in parameter `indexUids`: `the good doggo` is not a valid index uid. {INDEX_UID_RULE}",
        ),
    ),
    (
        "indexUids=movies,h%C3%A9",
        error(
            "invalid_task_index_uids",
            f"Invalid value in parameter `indexUids[1]`: `hé` is not a valid index uid. {INDEX_UID_RULE}",
        ),
    ),
    (
        f"indexUids={'a' * 401}",
        error(
            "invalid_task_index_uids",
            f"Invalid value in parameter `indexUids`: `{'a' * 401}` is not a valid index uid. {INDEX_UID_RULE}",
        ),
    ),
    *[(f"{name}=doggo", not_a_date(name, "doggo")) for name in DATE_PARAMETERS],
    *[
        (f"afterFinishedAt={value}", not_a_date("afterFinishedAt", value))
        for value in (
            "2021",
            "2021-12",
            "2021-12-03T23",
            "2021-12-03T23:45",
            "2021-02-30",
            "2021-12-03T24:00:00Z",
            "2021-12-03T23:45:00",
            "0000-01-01",
            "",
            "2021-1-03",
        )
    ],
]


@pytest.mark.parametrize("method, path", ROUTES)
@pytest.mark.parametrize("query, expected", FILTER_ERRORS)
async def test_bad_filters_are_400_on_every_route(http, method, path, query, expected):
    response = await http.request(method, f"{path}?{query}")
    assert (response.status_code, response.json()) == (400, expected)
    assert list(response.json()) == ERROR_KEYS


@pytest.mark.parametrize(
    "query, expected",
    [
        ("limit=doggo", not_uint("invalid_task_limit", "limit", "doggo")),
        ("limit=-1", not_uint("invalid_task_limit", "limit", "-1")),
        ("limit=1.0", not_uint("invalid_task_limit", "limit", "1.0")),
        ("from=doggo", not_uint("invalid_task_from", "from", "doggo")),
        ("from=*", not_uint("invalid_task_from", "from", "*")),
        *[
            (
                f"reverse={value}",
                error(
                    "invalid_task_reverse",
                    f"Invalid value in parameter `reverse`: could not parse"
                    f" `{value}` as a boolean, expected either `true` or `false`",
                ),
            )
            for value in ("doggo", "1", "True", "")
        ],
        (
            "lol=1",
            error("bad_request", "Unknown parameter `lol`: expected one of " + LIST_FILTERS),
        ),
        ("limit=2&uids=x&lol=1", not_uint("invalid_task_uids", "uids", "x")),  # the first bad one, in query order
    ],
)
async def test_bad_list_parameters(http, query, expected):
    response = await http.get(f"/tasks?{query}")
    assert (response.status_code, response.json()) == (400, expected)


@pytest.mark.parametrize("path", ["/tasks/cancel", "/tasks"])
@pytest.mark.parametrize("name", ["limit", "from", "reverse", "lol", "Uids"])
async def test_cancel_and_delete_take_only_filters(http, path, name):
    method = "POST" if path.endswith("cancel") else "DELETE"
    response = await http.request(method, f"{path}?{name}=12")
    assert (response.status_code, response.json()) == (
        400,
        error("bad_request", f"Unknown parameter `{name}`: expected one of {MATCHING_FILTERS}"),
    )


async def test_cancel_and_delete_without_filters_are_rejected(http):
    for query in ("", "?"):
        response = await http.post(f"/tasks/cancel{query}")
        assert (response.status_code, response.json()) == (400, missing_filters("cancel"))
        response = await http.delete(f"/tasks{query}")
        assert (response.status_code, response.json()) == (400, missing_filters("delete"))
    assert (await http.get("/tasks")).json()["total"] == 0  # nothing was enqueued


async def test_unknown_routes_and_methods_get_the_error_shape(http):
    response = await http.get("/nope")
    assert (response.status_code, response.json()) == (
        404,
        error("bad_request", "There is no route `GET /nope`; see `GET /openapi.json`."),
    )
    response = await http.put("/tasks")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST", "DELETE"}
    assert response.json() == error("bad_request", "`PUT /tasks`: method not allowed; see `GET /openapi.json`.")


async def test_a_server_that_is_down_is_503(unused_tcp_port):
    gateway = create_app(f"127.0.0.1:{unused_tcp_port}", timeout=5)
    unavailable = error(
        "unavailable",
        "The task queue is unavailable right now: the gateway got no answer from its gRPC server. Retry later.",
        "system",
    )
    async with gateway.router.lifespan_context(gateway):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://g") as http:
            for method, path, body in [
                ("GET", "/health", None),
                ("GET", "/tasks", None),
                ("GET", "/tasks/0", None),
                ("POST", "/tasks/cancel?uids=1", None),
                ("DELETE", "/tasks?uids=1", None),
                ("POST", "/tasks", {"type": "dumpCreation"}),
            ]:
                response = await http.request(method, path, json=body)
                assert (response.status_code, response.json()) == (503, unavailable), path
            # Parsing still answers first: a bad request is a bad request whatever the server's state.
            assert (await http.get("/tasks?limit=x")).status_code == 400


async def test_an_unexpected_exception_is_a_500_without_a_trace(caplog):
    @edge
    async def broken(request):
        raise RuntimeError("secret detail")

    app = Starlette(routes=[Route("/broken", broken)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as http:
        response = await http.get("/broken")
    assert (response.status_code, response.json()) == (500, error("internal", "internal error", "internal"))
    assert "secret detail" not in response.text
    assert "secret detail" in caplog.text  # logged for the operator, with its traceback
