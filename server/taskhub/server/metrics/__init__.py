"""The server's Prometheus metrics (docs/metrics.md): `ServerMetrics` (what the rules report, what the read
model holds), `rpc` (the gRPC interceptor), `hooks` (gauges other parts of the server update)."""
