"""Shared fixtures: a real service on 127.0.0.1:0 over a real SQLite file, and a real channel."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Iterator

import grpc
import httpx
import pytest

from taskhub.server import app
from taskhub.server.config import Config
from taskhub.v1 import task_service_pb2_grpc

START = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, in microseconds
MASTER_KEY = "a-master-key-of-sixteen-bytes-or-more"


class FakeClock:
    """A clock tests move by hand; every reading advances it by one millisecond."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the session. Where PostgreSQL is missing the tests that
    need it are skipped, except in CI, where they fail: .ci/run installs it."""
    import postgres_cluster as cluster

    if not cluster.available():
        if os.environ.get("CI"):
            raise RuntimeError("PostgreSQL is not installed, and CI runs every PostgreSQL test")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    running = cluster.start()
    yield running
    running.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# The finder the tests' servers use: scripts/test.sh runs the queue's tests a second time with `sql`, so both
# finders answer the same suite.
TASK_INDEX = os.environ.get("TASKHUB_TEST_TASK_INDEX", "memory")


# The database the tests' servers use: scripts/test.sh runs the queue's tests a third time with `postgres` (a fresh
# database a test in a throwaway cluster).
TEST_DB = os.environ.get("TASKHUB_TEST_DB", "sqlite")
_databases = iter(range(1_000_000))


def pytest_collection_modifyitems(config, items):
    """On the PostgreSQL pass, only the tests whose server stands on the `config` fixture's database run (the rest
    do not touch it: the first pass ran them), less those marked `sqlite_only` (about SQLite itself)."""
    if TEST_DB != "postgres":
        return
    keep, drop = [], []
    for item in items:
        uses_db = "config" in getattr(item, "fixturenames", ())
        (keep if uses_db and item.get_closest_marker("sqlite_only") is None else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _backends(item) -> tuple[str, ...]:
    """The databases a test ran on: the `config` fixture's, PostgreSQL if it asked for the cluster itself, and the
    kind a parametrized test names (the storage contract's suite runs once per store)."""
    names = getattr(item, "fixturenames", ())
    found = {TEST_DB} if "config" in names else set()
    if "postgres_cluster" in names:
        found.add("postgres")
    params = getattr(getattr(item, "callspec", None), "params", {})
    found.update(value for value in params.values() if value in ("sqlite", "postgres"))
    return tuple(sorted(found))


_ran: dict[str, int] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and not report.skipped:  # ran (passed or failed), not skipped
        for backend in _backends(item):
            _ran[backend] = _ran.get(backend, 0) + 1


def pytest_terminal_summary(terminalreporter):
    """How many tests ran on each database, so a pass that quietly skipped PostgreSQL shows it."""
    counts = ", ".join(
        f"{_ran.get(name, 0)} on {label}" for name, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL"))
    )
    terminalreporter.write_line(f"databases: {counts}")


@pytest.fixture
def config(request, tmp_path) -> Iterator[Config]:
    cluster, name = None, f"test_{next(_databases)}"
    if TEST_DB == "postgres":
        cluster = request.getfixturevalue("postgres_cluster")
        db = cluster.create_database(name)
    else:
        db = str(tmp_path / "data" / "taskhub.db")
    yield Config(
        db=db,
        grpc_listen="127.0.0.1:0",
        no_http=True,
        snapshots_dir=str(tmp_path / "snapshots"),
        dumps_dir=str(tmp_path / "dumps"),
        grace_seconds=0.5,
        task_index=TASK_INDEX,
    )
    if cluster is not None:  # after the test's servers stopped: hundreds of databases would fill the disk
        cluster.drop_database(name)


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


@contextlib.asynccontextmanager
async def gateway_client(grpc_target: str) -> AsyncIterator[httpx.AsyncClient]:
    """The JSON gateway in front of `grpc_target`, in-process through httpx.ASGITransport.

    ASGITransport does not run the lifespan, so this runs it: the gateway's
    channel is opened and closed as under uvicorn.
    """
    from taskhub.gateway.app import create_app

    gateway = create_app(grpc_target)
    async with gateway.router.lifespan_context(gateway):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as client:
            yield client


@pytest.fixture
async def http(service):
    """The JSON gateway in front of `service`."""
    async with gateway_client(service.grpc_target) as client:
        yield client


@pytest.fixture
async def secured_service(config, clock):
    """The service with a master key (MASTER_KEY), and no background loop."""
    running = await app.start(dataclasses.replace(config, master_key=MASTER_KEY), background=False, clock=clock)
    yield running
    await running.stop(0)


@pytest.fixture
async def secured_http(secured_service):
    """The JSON gateway in front of `secured_service`; requests carry no credentials unless given."""
    async with gateway_client(secured_service.grpc_target) as client:
        yield client
