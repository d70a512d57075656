"""The gRPC MetricsService: the server's metrics in Prometheus' text format, for callers with `metrics.get` on
every index (the series name them all)."""

from __future__ import annotations

from taskhub.server.edge.services import authorization, error_edge
from taskhub.server.metrics.server import CONTENT_TYPE, ServerMetrics
from taskhub.server.rules.auth import Keyring, invalid_key
from taskhub.v1 import metrics_service_pb2 as mpb, metrics_service_pb2_grpc


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    """`taskhub.v1.MetricsService` over a server's metrics."""

    def __init__(self, metrics: ServerMetrics, keys: Keyring) -> None:
        self.metrics = metrics
        self.keys = keys

    async def GetMetrics(self, request: mpb.GetMetricsRequest, context) -> mpb.GetMetricsResponse:
        async with error_edge(context):
            # The series name every index: a key limited to some indexes may not read them.
            if self.keys.require(authorization(context), "metrics.get").scope is not None:
                raise invalid_key()
            return mpb.GetMetricsResponse(text=await self.metrics.render(), content_type=CONTENT_TYPE)
