"""The health status follows the database: NOT_SERVING while it cannot be reached, SERVING once it answers.

A server on PostgreSQL outlives the database's outages (its connections come back), but calls
meanwhile fail as `unavailable`: load balancers and the gateway's `/health` (503) should send
traffic elsewhere until the database answers again. A probe asks once a second, off the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from grpc_health.v1 import _async as health_async, health_pb2

log = logging.getLogger(__name__)

INTERVAL = 1.0


class Probe(Protocol):
    reason: str  # why the last `alive()` answered False

    def alive(self) -> bool: ...

    def close(self) -> None: ...


class StoreWatch:
    """Asks `probe` every `interval` seconds and sets the health status of `names` from its answer."""

    def __init__(
        self,
        probe: Probe,
        health: health_async.HealthServicer,
        names: Sequence[str],
        interval: float = INTERVAL,
    ) -> None:
        self.probe = probe
        self.health = health
        self.names = tuple(names)
        self.interval = interval
        self.serving = True
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="taskhub-store-health")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            alive = await asyncio.to_thread(self.probe.alive)
            if alive != self.serving and not self._stopping.is_set():
                self.serving = alive
                if alive:
                    log.warning("the database answers again: serving")
                else:
                    log.warning(
                        "the database cannot be reached (%s): health is NOT_SERVING until it answers",
                        self.probe.reason.replace("\n", " "),
                    )
                status = health_pb2.HealthCheckResponse.SERVING if alive else health_pb2.HealthCheckResponse.NOT_SERVING
                for name in self.names:
                    await self.health.set(name, status)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def stop(self) -> None:
        """Ends the watch (after the probe under way, if any) and closes the probe."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await asyncio.to_thread(self.probe.close)
