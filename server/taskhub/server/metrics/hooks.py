"""Gauges and counters for parts of the server that report through metrics without owning any.

`ServerMetrics` makes one of each on its registry; the part that reports is handed it at assembly
(`service.metrics.webhooks`, `service.metrics.replica`) and calls its methods from any thread.
Until a part reports, its series are absent (a replica name nobody set is not shown as empty).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class WebhookMetrics:
    """Webhook deliveries: each attempt's outcome, and the outbox's size."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._deliveries = Counter(
            "taskhub_webhook_deliveries",
            "Webhook delivery attempts, by outcome (`delivered`, `failed`: to be retried, `dropped`: given up).",
            ["outcome"],
            registry=registry,
        )
        self._outbox = Gauge("taskhub_webhook_outbox", "Webhook deliveries waiting in the outbox.", registry=registry)

    def delivered(self, outcome: str, count: int = 1) -> None:
        """`count` delivery attempts ended with `outcome` (`delivered`, `failed` or `dropped`)."""
        self._deliveries.labels(outcome).inc(count)

    def outbox(self, waiting: int) -> None:
        """The outbox holds `waiting` deliveries now."""
        self._outbox.set(waiting)


class ReplicaMetrics:
    """This server as one replica of several on one PostgreSQL database: its name, and whether it leads."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._leader = Gauge(
            "taskhub_replica_leader",
            "1 while this replica leads (runs the server-run tasks), else 0; labelled with its name.",
            ["replica"],
            registry=registry,
        )
        self._name: str | None = None

    def set(self, name: str, leading: bool) -> None:
        """This replica is `name`, and leads or not (call again whenever either changes)."""
        if self._name is not None and self._name != name:
            self._leader.remove(self._name)
        self._name = name
        self._leader.labels(name).set(1 if leading else 0)
