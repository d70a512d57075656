"""Starting and stopping the service: store, scheduler, gRPC server and gateway.

`start()` builds everything and answers a running `Service` (tests use it on
port 0); `serve()` is `taskhub serve`: start, wait for SIGTERM or SIGINT, stop
gracefully, close the database.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from taskhub.server import exports
from taskhub.server.config import Config
from taskhub.server.scheduler import Scheduler, wall_clock
from taskhub.server.services import TaskService
from taskhub.server.store import Store
from taskhub.v1 import task_service_pb2, task_service_pb2_grpc

log = logging.getLogger("taskhub")

MAX_MESSAGE = 64 * 1024 * 1024
SERVICE_NAMES = (task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,)


@dataclass
class Service:
    """A running taskhub: its parts and the gRPC port it listens on."""

    config: Config
    store: Store
    scheduler: Scheduler
    server: grpc.aio.Server
    health: health_async.HealthServicer
    grpc_port: int
    # The JSON gateway (a taskhub.gateway.serving.GatewayServer), unless `no_http`.
    gateway: Any = None

    @property
    def grpc_target(self) -> str:
        host = self.config.grpc_listen.rsplit(":", 1)[0]
        return f"{host}:{self.grpc_port}"

    async def stop(self, grace: float | None = None) -> None:
        """Stops taking calls, lets in-flight ones finish within `grace`, then closes the store."""
        if self.gateway is not None:  # first: its requests in flight still need the gRPC server
            await self.gateway.stop()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.config.grace_seconds if grace is None else grace)
        await self.scheduler.stop()
        self.store.close()


def open_store(config: Config) -> Store:
    if config.import_snapshot:
        exports.import_snapshot(config.import_snapshot, config.db)
    store = Store(config.db)
    if config.import_dump:
        count = exports.import_dump(store, config.import_dump)
        log.info("imported %d tasks from %s", count, config.import_dump)
    return store


async def start(config: Config, *, background: bool = True, clock: Callable[[], int] = wall_clock) -> Service:
    """Opens the store, recovers, and starts the gRPC server.

    Tests pass `background=False` to drive `scheduler.tick()` themselves, and a fake `clock`.
    """
    store = open_store(config)
    scheduler = Scheduler(store, clock=clock, snapshots_dir=config.snapshots_dir, dumps_dir=config.dumps_dir)
    await scheduler.start(background=background)

    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ])
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(TaskService(scheduler), server)
    health = health_async.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", *SERVICE_NAMES):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                                         reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(config.grpc_listen)
    if port == 0:
        raise OSError(f"cannot listen on {config.grpc_listen}")
    await server.start()
    service = Service(config=config, store=store, scheduler=scheduler, server=server, health=health, grpc_port=port)
    if not config.no_http:
        # Imported here: a gRPC-only server does not need Starlette or uvicorn.
        from taskhub.gateway.serving import GatewayServer
        try:
            service.gateway = await GatewayServer.start(service.grpc_target, config.http_listen,
                                                        grace=config.grace_seconds)
        except BaseException:
            await service.stop(0)
            raise
    return service


async def serve(config: Config) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    service = await start(config)
    log.info("taskhub gRPC listening on %s (db %s)", service.grpc_target, config.db)
    if service.gateway is not None:
        log.info("taskhub gateway listening on %s (port %d)", config.http_listen, service.gateway.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down (grace %.1fs)", config.grace_seconds)
    await service.stop()
    log.info("stopped cleanly")
