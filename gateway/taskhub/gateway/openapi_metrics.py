"""The OpenAPI description of `GET /metrics`."""

from __future__ import annotations

PATHS = {
    "/metrics": {
        "get": {
            "operationId": "getMetrics",
            "summary": "Prometheus metrics (taskhub extension of Meilisearch's experimental route)",
            "description": "The server's and this gateway's series, every name prefixed `taskhub_`, in Prometheus'"
            " text format (docs/metrics.md lists them). With a master key, needs the `metrics.get` action on every"
            " index (`*`): the series name them all.",
            "responses": {
                "200": {
                    "description": "The series.",
                    "content": {"text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}},
                },
            },
        },
    },
}
