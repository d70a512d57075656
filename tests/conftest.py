"""Shared fixtures: a real service on 127.0.0.1:0 over a real SQLite file, and a real channel."""

from __future__ import annotations

import grpc
import pytest

from taskhub.server import app
from taskhub.server.config import Config
from taskhub.v1 import task_service_pb2_grpc

START = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, in microseconds


class FakeClock:
    """A clock tests move by hand; every reading advances it by one millisecond."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(db=str(tmp_path / "data" / "taskhub.db"), grpc_listen="127.0.0.1:0", no_http=True,
                  snapshots_dir=str(tmp_path / "snapshots"), dumps_dir=str(tmp_path / "dumps"),
                  grace_seconds=0.5)


@pytest.fixture
async def service(config, clock):
    """The service with no background loop: tests call `service.scheduler.tick()`."""
    running = await app.start(config, background=False, clock=clock)
    yield running
    await running.stop(0)


@pytest.fixture
async def channel(service):
    async with grpc.aio.insecure_channel(service.grpc_target) as chan:
        yield chan


@pytest.fixture
def stub(channel) -> task_service_pb2_grpc.TaskServiceStub:
    return task_service_pb2_grpc.TaskServiceStub(channel)
