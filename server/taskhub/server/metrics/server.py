"""`ServerMetrics`: the server's series on a registry of its own, rendered in Prometheus' text format.

Three kinds of series. Counters and histograms the rules feed as they work (it is the `Meter` of
`Units`: units of work, changes followed, events noted in committed units of work), counting what
this process did, so that a sum over replicas counts each thing once. Gauges read at scrape time
from what is already kept: the in-memory index's bitmap sizes (never a COUNT over the rows), the
watch hub, the store thread's queue, and three point reads on the read thread (task count, active
leases, bytes used). And the hooks (`hooks.py`) other parts update.

The series budget: the per-index gauges cover the `max_indexes` indexes holding the most tasks, the
others summed under `index="~other"` (no index uid has a `~`), each in the statuses it has tasks in;
histograms have few buckets. A scrape's cost is mostly prometheus-client's, per series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from taskhub.server import version
from taskhub.server.index.memory import MemoryFinder
from taskhub.server.metrics import buckets
from taskhub.server.metrics.hooks import ReplicaMetrics, WebhookMetrics
from taskhub.server.model import CustomType, TaskKind, TaskStatus, TaskType
from taskhub.server.rules.meter import Meter
from taskhub.server.rules.scheduler import Scheduler
from taskhub.server.storage.contract import Changes, Reader, StorageUnavailable

# Prometheus' classic text format, which every scraper reads (prometheus-client's newest default names 1.0.0).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_MAX_INDEXES = 100
OTHER = "~other"
FINISHED = frozenset({int(TaskStatus.SUCCEEDED), int(TaskStatus.FAILED), int(TaskStatus.CANCELED)})

# `_created` series would double every counter and histogram; Prometheus does not need them.
disable_created_metrics()


class ServerMetrics(Meter):
    """Every series of one server; `units.meter` of its scheduler."""

    def __init__(self, scheduler: Scheduler, *, limit_bytes: int | None, max_indexes: int = DEFAULT_MAX_INDEXES):
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self.scheduler = scheduler
        self.enqueued = Counter(
            "taskhub_tasks_enqueued", "Tasks enqueued by this server, by type.", ["type"], registry=registry
        )
        self.finished = Counter(
            "taskhub_tasks_finished",
            "Tasks this server finished, by type and status (succeeded, failed, canceled).",
            ["type", "status"],
            registry=registry,
        )
        self.retries = Counter(
            "taskhub_task_retries",
            "Retryable failures sent back to wait for another attempt, by type.",
            ["type"],
            registry=registry,
        )
        self.exhausted = Counter(
            "taskhub_task_attempts_exhausted",
            "Tasks failed for good with their attempts spent, by how the last one ended (expired, failed).",
            ["reason"],
            registry=registry,
        )
        self.leases_granted = Counter("taskhub_leases_granted", "Batches leased to workers.", registry=registry)
        self.leases_expired = Counter(
            "taskhub_leases_expired", "Leases that expired before their worker reported.", registry=registry
        )
        self.unit_seconds = Histogram(
            "taskhub_store_unit_seconds",
            "Units of work on the store thread, from their start to their commit, by rule function.",
            ["unit"],
            buckets=buckets.LATENCY,
            registry=registry,
        )
        self.group_commits = Histogram(
            "taskhub_store_group_commit_tasks",
            "New tasks per group commit (one transaction, one fsync).",
            buckets=buckets.GROUP_COMMIT,
            registry=registry,
        )
        self._events = {
            "lease_granted": lambda label, n: self.leases_granted.inc(n),
            "lease_expired": lambda label, n: self.leases_expired.inc(n),
            "attempts_exhausted": lambda label, n: self.exhausted.labels(label).inc(n),
            "retry": lambda label, n: self.retries.labels(label).inc(n),
        }
        self._units: dict[str, Histogram] = {}
        self._top_uid = -1  # the newest uid followed: a change above it is a new task
        self.state = StateCollector(scheduler, limit_bytes=limit_bytes, max_indexes=max_indexes)
        registry.register(self.state)
        ProcessCollector(namespace="taskhub", registry=registry)
        self.webhooks = WebhookMetrics(registry)
        self.replica = ReplicaMetrics(registry)

    # -- Meter: on the store thread ---------------------------------------

    def started(self, next_uid: int) -> None:
        self._top_uid = next_uid - 1

    def unit(self, name: str, seconds: float) -> None:
        child = self._units.get(name)
        if child is None:
            # A lambda has no name worth a label.
            child = self._units[name] = self.unit_seconds.labels("other" if name.startswith("<") else name.lstrip("_"))
        child.observe(seconds)

    def followed(self, changes: Changes, own: tuple[int, int] | None) -> None:
        """Counts this process's commits: a task above the newest uid followed is new, a task in a finished
        status has finished (a task is saved in one only once; deleted ones are logged in their last state)."""
        top = self._top_uid
        if own is None:
            self._top_uid = max(top, max((task.uid for task in changes.tasks), default=top))
            return
        first, last = own
        # Keyed by the types' and statuses' codes (ints hash and compare fastest): this runs for every change.
        enqueued: dict[int, int] = {}
        finished: dict[tuple[int, int], int] = {}
        kinds: dict[int, TaskKind] = {}
        seen: set[int] = set()
        for task in changes.tasks:
            uid = task.uid
            if not first <= task.seq <= last:
                top = max(top, uid)
                continue
            code = int(task.type)
            if uid > top:
                top = uid
                enqueued[code] = enqueued.get(code, 0) + 1
                kinds[code] = task.type
            status = int(task.status)
            if status in FINISHED and uid not in changes.deleted and uid not in seen:
                seen.add(uid)
                finished[code, status] = finished.get((code, status), 0) + 1
                kinds[code] = task.type
        self._top_uid = top
        for code, count in enqueued.items():
            self.enqueued.labels(kinds[code].label).inc(count)
        for (code, status), count in finished.items():
            self.finished.labels(kinds[code].label, TaskStatus(status).label).inc(count)

    def noted(self, events: list[tuple[str, str, int]]) -> None:
        for event, label, count in events:
            self._events[event](label, count)

    # -- on the loop ------------------------------------------------------

    def group_commit(self, tasks: int) -> None:
        self.group_commits.observe(tasks)

    async def render(self) -> str:
        """Every series, in Prometheus' text format: the point reads first (off the loop), then the rest."""
        try:
            stored, outbox = await self.scheduler.units.read(_stored)
        except StorageUnavailable:  # the database away: every other series still answers, these are left out
            self.state.stored = None
        else:
            self.state.stored = stored
            self.webhooks.outbox(outbox)
        return generate_latest(self.registry).decode()


def _stored(reader: Reader) -> tuple[tuple[int, int, int], int]:
    """On the read thread: (tasks stored, leases active, bytes used) and the webhook outbox's entries; counters
    and index ranges, no scan."""
    return (reader.tasks.count(), reader.leases.count_active(), reader.used_bytes()), reader.webhooks.outbox_size()


class StateCollector(Collector):
    """Gauges of what the server holds now, computed at each scrape."""

    def __init__(self, scheduler: Scheduler, *, limit_bytes: int | None, max_indexes: int) -> None:
        self.scheduler = scheduler
        self.limit_bytes = limit_bytes
        self.max_indexes = max_indexes
        self.stored: tuple[int, int, int] | None = None
        build = version.this_server()
        self.build = (build.package_version or "", build.commit_sha or "")

    def collect(self) -> Iterator[Metric]:
        scheduler = self.scheduler
        info = GaugeMetricFamily(
            "taskhub_build_info", "The server's version and commit; always 1.", labels=["version", "commit"]
        )
        info.add_metric(list(self.build), 1)
        yield info
        if self.stored is not None:
            count, leases, used = self.stored
            yield GaugeMetricFamily("taskhub_tasks_stored", "Tasks in the database.", value=count)
            yield GaugeMetricFamily("taskhub_leases_active", "Leases held by workers now.", value=leases)
            yield GaugeMetricFamily(
                "taskhub_db_used_bytes", "Bytes the database uses, as the queue-full rule counts them.", value=used
            )
        if self.limit_bytes is not None:
            yield GaugeMetricFamily(
                "taskhub_db_limit_bytes",
                "Past this many used bytes new tasks are refused (--max-task-db-size).",
                value=self.limit_bytes,
            )
        yield GaugeMetricFamily(
            "taskhub_watch_streams", "Watch streams open (WatchTask, WatchTasks).", value=scheduler.hub.watchers
        )
        yield GaugeMetricFamily(
            "taskhub_store_queue_jobs",
            "Jobs waiting for the store thread (units of work and their kin).",
            value=scheduler.units.pending,
        )
        if isinstance(scheduler.finder, MemoryFinder):
            yield from self._tasks(scheduler.finder)

    def _tasks(self, finder: MemoryFinder) -> Iterator[Metric]:
        """From the index's bitmap sizes: by status and type, and by index (the largest ones) and status."""
        tally = finder.tally(self.max_indexes)
        types = self.scheduler.types.of
        by_type = GaugeMetricFamily(
            "taskhub_tasks", "Tasks held by the index, by status and type.", labels=["status", "type"]
        )
        kinds = {kind for _, kind in tally.by_status_type}
        for kind in sorted(kinds):
            # The index keys a registered type by its code: its name is the server's (or another's, not known here).
            known = kind if isinstance(kind, TaskType | CustomType) else types.get(int(kind))
            label = known.label if known is not None else str(int(kind))
            for status in TaskStatus:
                by_type.add_metric([status.label, label], tally.by_status_type.get((status, kind), 0))
        yield by_type
        by_index = GaugeMetricFamily(
            "taskhub_index_tasks",
            f"Tasks by index and status: the indexes holding the most tasks, the others summed as `{OTHER}`.",
            labels=["index", "status"],
        )
        # Only the statuses an index has tasks in: an index's series are most of a scrape's, and each costs.
        for (name, status), count in sorted(tally.by_index_status.items()):
            by_index.add_metric([name, status.label], count)
        for status, count in sorted(tally.other.items()):
            by_index.add_metric([OTHER, status.label], count)
        yield by_index
        yield GaugeMetricFamily("taskhub_indexes", "Indexes holding at least one task.", value=tally.indexes)
