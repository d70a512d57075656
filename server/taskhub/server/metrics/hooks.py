"""Gauges and counters for parts of the server that report through metrics without owning any.

`ServerMetrics` makes one of each on its registry; the part that reports is handed it at assembly
(`service.metrics.webhooks`, `service.metrics.replica`) and calls its methods from any thread.
Until a part reports, its series are absent (a replica name nobody set is not shown as empty).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily

OUTCOMES = ("delivered", "failed", "dropped")


class WebhookMetrics:
    """Webhook deliveries: each attempt's outcome, and the outbox's size.

    Outcomes come two ways: `delivered()` adds to them, and `watch(counts)` reads a delivery's own
    counters (`ok`, `failed`, `dropped`) at each scrape, so the delivery loops never wait on a lock of ours.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._totals = dict.fromkeys(OUTCOMES, 0)
        self._watched: Any = None
        self._reported = False
        self._outbox = Gauge("taskhub_webhook_outbox", "Webhook deliveries waiting in the outbox.", registry=registry)
        registry.register(self)

    def delivered(self, outcome: str, count: int = 1) -> None:
        """`count` delivery attempts ended with `outcome` (`delivered`, `failed` or `dropped`)."""
        self._totals[outcome] += count
        self._reported = True

    def watch(self, counts: Any) -> None:
        """Reads `counts.ok`, `counts.failed` and `counts.dropped` (the delivery's own) at every scrape."""
        self._watched = counts

    def outbox(self, waiting: int) -> None:
        """The outbox holds `waiting` deliveries now."""
        self._outbox.set(waiting)

    def collect(self) -> Iterator[CounterMetricFamily]:
        if not self._reported and self._watched is None:
            return
        family = CounterMetricFamily(
            "taskhub_webhook_deliveries",
            "Webhook delivery attempts, by outcome (`delivered`, `failed`: to be retried, `dropped`: given up).",
            labels=["outcome"],
        )
        watched = self._watched
        for outcome, attribute in zip(OUTCOMES, ("ok", "failed", "dropped"), strict=True):
            value = self._totals[outcome] + (getattr(watched, attribute) if watched is not None else 0)
            family.add_metric([outcome], value)
        yield family


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
