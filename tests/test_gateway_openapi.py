"""`GET /openapi.json` documents exactly the gateway's routes and parameters."""

from __future__ import annotations

from starlette.routing import Route

from taskhub.gateway import keys, query
from taskhub.gateway.app import ROUTES


async def test_every_route_is_documented_and_every_documented_operation_is_a_route(http):
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    served = {
        (route.path, method)
        for route in ROUTES
        if isinstance(route, Route)
        for method in route.methods
        if method != "HEAD"
    }
    assert documented == served


async def test_documented_parameters_are_the_parsed_ones(http):
    paths = (await http.get("/openapi.json")).json()["paths"]

    def names(path: str, method: str) -> list[str]:
        # An exploded object parameter stands for its properties, each its own `name=value`.
        return [
            name
            for p in paths[path][method].get("parameters", [])
            if p["in"] == "query"
            for name in (p["schema"]["properties"] if p.get("explode") else [p["name"]])
        ]

    assert names("/tasks", "get") == list(query.LIST_PARAMETERS)
    assert names("/tasks", "delete") == names("/tasks/cancel", "post") == list(query.MATCHING_PARAMETERS)
    assert names("/batches", "get") == list(query.LIST_PARAMETERS)
    assert names("/keys", "get") == list(keys.LIST_PARAMETERS)
    assert names("/tasks/events", "get") == list(query.WATCH_PARAMETERS)
    headers = [
        p["name"]
        for path in ("/tasks/events", "/tasks/{uid}/events")
        for p in paths[path]["get"]["parameters"]
        if p["in"] == "header"
    ]
    assert headers == ["Last-Event-ID", "Last-Event-ID"]


async def test_documented_key_bodies_are_the_parsed_ones(http):
    schemas = (await http.get("/openapi.json")).json()["components"]["schemas"]
    assert set(schemas["NewKey"]["properties"]) == set(keys.CREATE_FIELDS)
    assert set(schemas["KeyPatch"]["properties"]) == set(keys.PATCH_FIELDS)
    assert schemas["Key"]["required"] == list(schemas["Key"]["properties"])  # in Meilisearch's key order


def test_documented_key_actions_are_the_servers():
    from taskhub.gateway.openapi_schemas import ACTIONS as DOCUMENTED
    from taskhub.server.rules.auth import ACTIONS

    assert list(ACTIONS) == DOCUMENTED


async def test_every_reference_resolves(http):
    document = (await http.get("/openapi.json")).json()

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref
