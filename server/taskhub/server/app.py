"""Starting and stopping the service: store, scheduler, gRPC server and gateway.

`start()` builds everything and answers a running `Service` (tests use it on
port 0); `serve()` is `taskhub serve`: start, wait for SIGTERM or SIGINT, stop
gracefully, close the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import _async as health_async, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from taskhub import limits
from taskhub.errors import TaskHubError
from taskhub.server import store_health
from taskhub.server.config import (
    Config,
    parse_duration,
    parse_size,
    statement_timeout_ms,
    task_type_names,
    watch_retention_bytes,
)
from taskhub.server.edge import decoding, tls
from taskhub.server.edge.key_service import KeyService
from taskhub.server.edge.metrics_service import MetricsService
from taskhub.server.edge.operations_service import OperationsService
from taskhub.server.edge.services import TaskService, WorkerService
from taskhub.server.edge.webhook_service import WebhookService
from taskhub.server.index.memory import MemoryFinder
from taskhub.server.lock import ServerLock
from taskhub.server.metrics.rpc import RpcMetrics
from taskhub.server.metrics.server import ServerMetrics
from taskhub.server.model import TaskType
from taskhub.server.rules import exports
from taskhub.server.rules.auth import Keyring
from taskhub.server.rules.ip_policy import IpPolicy
from taskhub.server.rules.leadership import Replica, ReplicaView
from taskhub.server.rules.retries import parse_policies
from taskhub.server.rules.scheduler import Scheduler, wall_clock
from taskhub.server.rules.watch import WatchHub
from taskhub.server.rules.webhooks import Webhooks, check_url as check_webhook_url
from taskhub.server.storage.contract import Changes, Storage, TaskFinder
from taskhub.server.storage.postgres.connection import Probe, redact, server_url
from taskhub.server.storage.postgres.database import PostgresStorage, is_postgres_url
from taskhub.server.storage.postgres.lock import PostgresServerLock
from taskhub.server.storage.sqlite.database import SqliteStorage
from taskhub.server.storage.sqlite.finder import SqlFinder
from taskhub.server.task_types import TaskTypes
from taskhub.server.webhook_delivery import Delivery
from taskhub.v1 import (
    key_service_pb2,
    key_service_pb2_grpc,
    metrics_service_pb2,
    metrics_service_pb2_grpc,
    operations_service_pb2,
    operations_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)

log = logging.getLogger("taskhub")

DB_HEADROOM = 64 * 1024 * 1024
MIN_MASTER_KEY = 16
# What answers "which tasks" (`--task-index`): the in-memory index, or SQL over the task rows.
FINDERS: dict[str, Callable[[Storage], TaskFinder]] = {
    # On PostgreSQL the index is built at start from the rows: there is no folder beside the database to save it in.
    "memory": lambda storage: MemoryFinder(
        snapshot_path=index_path(storage.path) if isinstance(storage, SqliteStorage) else None
    ),
    "sql": lambda storage: SqlFinder(storage.path),  # type: ignore[attr-defined]  # SQLite only: `check` says so
}
SERVICE_NAMES = (
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    key_service_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
    metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
    operations_service_pb2.DESCRIPTOR.services_by_name["OperationsService"].full_name,
    webhook_service_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name,
)


@dataclass
class Service:
    """A running taskhub: its parts and the gRPC port it listens on."""

    config: Config
    store: SqliteStorage | PostgresStorage
    scheduler: Scheduler
    keys: Keyring
    server: grpc.aio.Server
    health: health_async.HealthServicer
    grpc_port: int
    # The JSON gateway (a taskhub.gateway.serving.GatewayServer), unless `no_http`.
    gateway: Any = None
    # The database's lock (one server per file), released once the store is closed.
    lock: ServerLock | PostgresServerLock | None = None
    # Turns the health status to NOT_SERVING while the database cannot be reached (PostgreSQL).
    store_watch: store_health.StoreWatch | None = None

    @property
    def replica(self) -> ReplicaView:
        """This server among those on its database: name, whether it leads now, in which term (read-only).

        For logs, metrics and health; `scheduler.replica.observers` hears each change as it happens.
        """
        return self.scheduler.replica.view

    # Its Prometheus series (`metrics.webhooks` and `metrics.replica` for the parts that report through them).
    metrics: ServerMetrics | None = None
    # Webhooks' rules and their deliveries (None when the service runs without background work).
    webhooks: Webhooks | None = None
    delivery: Delivery | None = None

    @property
    def grpc_target(self) -> str:
        host = self.config.grpc_listen.rsplit(":", 1)[0]
        return f"{host}:{self.grpc_port}"

    async def stop(self, grace: float | None = None) -> None:
        """Stops taking calls, lets in-flight ones finish within `grace`, then closes the store.

        gRPC and the gateway stop together, on one deadline: both refuse new calls at
        once, and neither waits out its grace before the other starts. A gateway
        request still reading its body when the signal came then finds gRPC closed
        and answers 503 rather than acknowledge a task after SIGTERM.
        """
        grace = self.config.grace_seconds if grace is None else grace
        if self.store_watch is not None:
            await self.store_watch.stop()
        await self.health.enter_graceful_shutdown()
        # Watches end first, so no stream (gRPC or the gateway's) holds the shutdown up.
        self.scheduler.begin_shutdown()
        if self.delivery is not None:  # a POST in flight is cut short: its entries go again at the next start
            await self.delivery.stop(for_good=True)
        stopping = [self.server.stop(grace)]
        if self.gateway is not None:
            stopping.append(self.gateway.stop(grace))
        try:
            await asyncio.gather(*stopping)
            await self.scheduler.stop()
            self.store.close()
        finally:  # the kernel would drop it at exit anyway; a test's next service needs it now
            if self.lock is not None:
                self.lock.release()


def index_path(db: str) -> str:
    """Where the in-memory index is saved between starts: beside the database."""
    return db + ".index"


def open_store(config: Config) -> SqliteStorage | PostgresStorage:
    # The hard cap sits above the configured size, so cancelations and deletions still fit: as much
    # again at least, since canceling every task of a full queue logs each one's new state.
    limit = parse_size(config.max_task_db_size)
    max_bytes = limit + max(DB_HEADROOM, limit)
    store: SqliteStorage | PostgresStorage
    if is_postgres_url(config.db):
        store = PostgresStorage(config.db, max_bytes=max_bytes)
    else:
        if config.import_snapshot:
            exports.import_snapshot(config.import_snapshot, config.db)
        store = SqliteStorage(config.db, max_bytes=max_bytes)
        if config.import_snapshot:
            store.renew_epoch()  # a copy of another database's history: a saved index of this path is not for it
    with store.transaction() as tx:  # before a dump loads: its tasks may be of these types
        tx.task_types.register(task_type_names(config))
    if config.import_dump:
        count = exports.import_dump(store, config.import_dump)
        log.info("imported %d tasks from %s", count, config.import_dump)
    return store


def replica_name(config: Config) -> str:
    """This server's name among the replicas: `--replica-name`, or where it runs (`HOST:PID`)."""
    return config.replica_name or f"{socket.gethostname()}:{os.getpid()}"


def check(config: Config) -> None:
    """Refuses settings that cannot be served, before anything is opened."""
    if config.master_key and len(config.master_key.encode()) < MIN_MASTER_KEY:
        # As Meilisearch: a short key is guessed, and every API key's secret derives from it.
        raise ValueError(
            f"the master key must be at least {MIN_MASTER_KEY} bytes; this one has"
            f" {len(config.master_key.encode())} (--master-key or TASKHUB_MASTER_KEY)"
        )
    parse_duration(config.idempotency_ttl)
    statement_timeout_ms(config)
    if config.db_pool_size < 1:
        raise ValueError(f"--db-pool-size is 1 or more, not {config.db_pool_size}")
    policy = IpPolicy.parse(config.experimental_allowed_ip_networks)
    if config.task_webhook_url:
        try:
            check_webhook_url(config.task_webhook_url, policy)
        except TaskHubError as error:
            raise ValueError(f"--task-webhook-url: {error.message}") from None
    if config.webhook_outbox_size < 1:
        raise ValueError(f"--webhook-outbox-size is 1 or more, not {config.webhook_outbox_size}")
    if config.max_idempotency_keys < 0:
        raise ValueError(f"--max-idempotency-keys is 0 or more, not {config.max_idempotency_keys}")
    if config.metrics_max_indexes < 0:
        raise ValueError(f"--metrics-max-indexes is 0 or more, not {config.metrics_max_indexes}")
    if config.task_index not in FINDERS:
        raise ValueError(f"--task-index is `memory` or `sql`, not `{config.task_index}`")
    if is_postgres_url(config.db):
        if config.task_index == "sql":
            raise ValueError("--task-index sql answers from a SQLite file; on PostgreSQL use `memory`")
        if config.import_snapshot:
            raise ValueError(
                "--import-snapshot takes a SQLite snapshot; a PostgreSQL snapshot is a pg_dump file: restore it"
                " with pg_restore into an empty database, then serve that database"
            )
    registered = task_type_names(config)
    # A policy for a type no task can have is a typo: refused, naming it.
    named = set(parse_policies(config.retry_policy, config.max_attempts).by_type)
    unknown = sorted(named - {t.label for t in TaskType} - set(registered))
    if unknown:
        raise ValueError(
            f"--retry-policy names `{unknown[0]}`, which is neither one of Meilisearch's task types nor one of"
            " --task-types"
        )


async def start(config: Config, *, background: bool = True, clock: Callable[[], int] = wall_clock) -> Service:
    """Opens the store, recovers, and starts the gRPC server.

    Tests pass `background=False` to drive `scheduler.tick()` themselves, and a fake `clock`.
    """
    check(config)
    shown = shown_db(config.db)
    if is_postgres_url(config.db):  # from here on, no password in the URL (connection.py says where it goes)
        config = dataclasses.replace(
            config,
            db=server_url(
                config.db,
                password_file=config.db_password_file,
                statement_timeout_ms=statement_timeout_ms(config),
            ),
        )
    credentials = tls.server_credentials(config)
    # Before anything touches the database, imports included.
    lock = PostgresServerLock(config.db, shown) if is_postgres_url(config.db) else ServerLock(config.db)
    try:
        return await _start(config, lock, credentials, background=background, clock=clock)
    except BaseException:
        lock.release()
        raise


async def _start(
    config: Config,
    lock: ServerLock | PostgresServerLock,
    credentials: grpc.ServerCredentials | None,
    *,
    background: bool,
    clock: Callable[[], int],
) -> Service:
    store = open_store(config)
    hub = WatchHub(
        buffer=config.watch_buffer,
        max_watchers=config.max_watchers,
        per_key=config.max_watchers_per_key,
        per_connection=config.max_watchers_per_connection,
    )
    scheduler = Scheduler(
        store,
        FINDERS[config.task_index](store),
        types=TaskTypes(store.task_types.all(), task_type_names(config)),
        hub=hub,
        clock=clock,
        snapshots_dir=config.snapshots_dir,
        dumps_dir=config.dumps_dir,
        max_batch_size=config.max_batch_size,
        max_attempts=config.max_attempts,
        watch_retention=config.watch_retention,
        watch_retention_bytes=watch_retention_bytes(config),
        max_db_size=parse_size(config.max_task_db_size),
        cleanup_threshold=config.cleanup_threshold,
        cleanup_batch=config.cleanup_batch,
        commit_window=config.commit_window_ms / 1000,
        idempotency_ttl=parse_duration(config.idempotency_ttl),
        max_idempotency_keys=config.max_idempotency_keys,
        retry_policies=parse_policies(config.retry_policy, config.max_attempts),
        replica=Replica(replica_name(config), shared=isinstance(store, PostgresStorage)),
        readers=config.db_pool_size,
    )
    if scheduler.replica.shared:  # a type another replica registered since is found in the table
        scheduler.types.reread = scheduler.units.reader.task_types.all
    metrics = ServerMetrics(
        scheduler, limit_bytes=parse_size(config.max_task_db_size), max_indexes=config.metrics_max_indexes
    )
    scheduler.units.meter = metrics  # before the start, which tells it where the stored uids end
    # The replica's name and whether it leads, as series; told again at each lead taken or lost.
    replica = scheduler.replica
    metrics.replica.set(replica.name, replica.leads)
    replica.observers.append(lambda view: metrics.replica.set(view.name, view.leads))
    # Before the scheduler starts: every unit of work that finishes tasks fills the outbox from the first.
    webhooks = Webhooks(
        scheduler.units,
        clock,
        reserved_url=config.task_webhook_url,
        reserved_authorization=config.task_webhook_authorization_header,
        bound=config.webhook_outbox_size,
        policy=IpPolicy.parse(config.experimental_allowed_ip_networks),
    )
    await scheduler.start(background=background)

    # Past here the scheduler runs: a start that fails stops it and closes the store before the lock goes.
    try:
        payload_limit = parse_size(config.http_payload_size_limit)
        server = grpc.aio.server(
            interceptors=[RpcMetrics(metrics.registry)],
            options=[
                # gRPC's own RESOURCE_EXHAUSTED past it; details are measured exactly by the services.
                ("grpc.max_receive_message_length", limits.receive_limit(payload_limit)),
                ("grpc.max_send_message_length", limits.message_limit(payload_limit)),
                # gRPC's default would let a second server share a taken port: make it an error, as for any TCP server.
                ("grpc.so_reuseport", 0),
                # Clients ping every 10 s to notice a replica gone silent (taskhub.channels); gRPC's default
                # would answer pings more often than every 5 minutes with GOAWAY.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ],
        )
        # On a database other replicas write keys to, each call checks the cache is current.
        follow = scheduler.units.reader.keys if scheduler.replica.shared else None
        keys = Keyring(config.master_key, scheduler.units.run, clock, follow)
        await keys.load()
        if not keys.enabled:
            log.warning(
                "no master key is set: every call is allowed. Set --master-key (TASKHUB_MASTER_KEY)"
                " to require `Authorization: Bearer <key>`."
            )
        guarded = decoding.Guarded(server)  # undecodable requests: INVALID_ARGUMENT, not UNKNOWN
        task_service_pb2_grpc.add_TaskServiceServicer_to_server(
            TaskService(scheduler, keys, payload_limit=payload_limit), guarded
        )
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerService(scheduler, keys), guarded)
        key_service_pb2_grpc.add_KeyServiceServicer_to_server(KeyService(keys), guarded)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(metrics, keys), guarded)
        operations_service_pb2_grpc.add_OperationsServiceServicer_to_server(OperationsService(scheduler, keys), guarded)
        webhook_service_pb2_grpc.add_WebhookServiceServicer_to_server(WebhookService(webhooks, keys), guarded)
        await webhooks.sync_reserved()
        health = health_async.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        for name in ("", *SERVICE_NAMES):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        store_watch = (
            store_health.StoreWatch(Probe(config.db), health, ("", *SERVICE_NAMES))
            if is_postgres_url(config.db)
            else None
        )
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        gateway_port = None
        try:
            if credentials is None:
                port = server.add_insecure_port(config.grpc_listen)
            else:
                port = server.add_secure_port(config.grpc_listen, credentials)
                if not config.no_http:  # the embedded gateway's way in (tls.py says why)
                    gateway_port = server.add_secure_port(tls.LOOPBACK, tls.local_server_credentials())
        except RuntimeError:  # grpcio raises this when the address is taken
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {config.grpc_listen}: the address is in use or not valid (--grpc-listen)")
        await server.start()
    except BaseException:
        await scheduler.stop()
        store.close()
        raise
    service = Service(
        config=config,
        store=store,
        scheduler=scheduler,
        keys=keys,
        server=server,
        health=health,
        grpc_port=port,
        lock=lock,
        store_watch=store_watch,
        metrics=metrics,
        webhooks=webhooks,
    )
    if store_watch is not None:
        store_watch.start()
    if background:
        start_delivery(service)
    if not config.no_http:
        # Imported here: a gRPC-only server does not need Starlette or uvicorn.
        from taskhub.gateway.serving import GatewayServer

        # Its streams share one channel: the server trusts it to limit them per HTTP client.
        hub.gateway_token = secrets.token_urlsafe(24)
        try:
            if gateway_port is None:
                service.gateway = await GatewayServer.start(
                    service.grpc_target,
                    config.http_listen,
                    grace=config.grace_seconds,
                    allowed_hosts=config.http_allowed_hosts,
                    allowed_origins=config.http_allowed_origins,
                    payload_limit=payload_limit,
                    watch_token=hub.gateway_token,
                    max_watchers_per_client=config.max_watchers_per_client,
                )
            else:
                service.gateway = await GatewayServer.start(
                    f"127.0.0.1:{gateway_port}",
                    config.http_listen,
                    grace=config.grace_seconds,
                    allowed_hosts=config.http_allowed_hosts,
                    allowed_origins=config.http_allowed_origins,
                    payload_limit=payload_limit,
                    credentials=tls.local_channel_credentials(),
                    tls_cert=config.tls_cert,
                    tls_key=config.tls_key,
                    watch_token=hub.gateway_token,
                    max_watchers_per_client=config.max_watchers_per_client,
                )
        except BaseException:
            await service.stop(0)
            raise
    return service


def start_delivery(service: Service) -> None:
    """Starts POSTing finished tasks to the webhooks: server-run work, for one server of a database at a time
    (on replicas, the leader's)."""
    assert service.webhooks is not None
    delivery = service.delivery = Delivery(service.webhooks, service.scheduler.units)
    units = service.scheduler.units
    after = units.on_commit

    def committed(changes: Changes) -> None:
        after(changes)
        delivery.committed(changes)

    units.on_commit = committed
    # Server-run work: delivered by the leader alone, started when this server takes the lead and stopped
    # when it loses it (its cursor writes are fenced by the term as well).
    replica = service.scheduler.replica

    def lead_changed(view: ReplicaView) -> None:
        if view.leads:
            delivery.start()
        else:  # at once, so a lead taken back right after starts afresh; the cancelled loops end by themselves
            delivery.halt()

    replica.observers.append(lead_changed)
    if replica.leads:
        delivery.start()
    counts = delivery.counts
    if service.metrics is not None:
        service.metrics.webhooks.watch(counts)


def shown_db(db: str) -> str:
    """The database as the log shows it: a URL's password masked (`user:***@`, `password=***`)."""
    return redact(db)


def _dashboard_host(listen: str) -> str:
    host = listen.rsplit(":", 1)[0]
    return "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host  # a wildcard is not an address to open


async def serve(config: Config) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    service = await start(config)
    log.info("gRPC listening on %s", service.grpc_target)
    if service.gateway is not None:
        http = f"{_dashboard_host(config.http_listen)}:{service.gateway.port}"
        log.info("HTTP listening on %s, dashboard at http://%s/dashboard", http, http)
    count = await service.scheduler.call(service.store.tasks.count)
    log.info("database %s: %d task%s", shown_db(config.db), count, "" if count == 1 else "s")
    if service.scheduler.replica.shared:
        replica = service.replica
        lead = f"leads (term {replica.term})" if replica.leads else "follows the leader"
        log.info("replica %s %s; other replicas may serve the database too", replica.name, lead)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down (grace %.1fs)", config.grace_seconds)
    await service.stop()
    log.info("stopped cleanly")
