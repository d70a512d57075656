"""Clients that fail over: several targets, gRPC's `round_robin` and retry policy, against real servers.

Two `taskhub serve` subprocesses on two SQLite files stand in for replicas where the database does not
matter: calls spread over both, SIGKILL one and a caller sees no error (a call whose answer was lost is
retried on the other), the gateway keeps answering, a worker keeps working. Two proxies in front of one
server stand in for two replicas of one database when an answer is lost: the retry, sent through the
other, makes no second task. Replicas on one PostgreSQL database are tests/test_failover_replicas.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from cutting_proxy import CuttingProxy
from taskhub.channels import KEEPALIVE_MS, KEEPALIVE_TIMEOUT_MS, split
from taskhub.client import NO_RETRY, AsyncTaskHubClient, RetryPolicy, TaskHubClient, TaskStatus
from taskhub.client.worker import Worker
from taskhub.gateway.serving import GatewayServer
from taskhub.server import app
from test_serve import free_port, wait_serving
from test_tls import pki  # noqa: F401 - the fixture: a CA and a certificate for localhost and 127.0.0.1

JSON = {"content-type": "application/json"}
# Tests that start and SIGKILL `taskhub serve` subprocesses.
SUBPROCESSES = pytest.mark.slow


class Server:
    """One `taskhub serve` subprocess on its own SQLite file."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.db = folder / "taskhub.db"
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskhub.server.cli",
                "serve",
                "--db",
                str(self.db),
                "--grpc-listen",
                self.target,
                "--no-http",
                "--grace-seconds",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_serving(self.target).close()
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, the connections just drop."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def stored(self) -> int:
        """How many tasks its database holds (started again first if it was killed)."""
        if self.process is None or self.process.poll() is not None:
            self.start()
        with TaskHubClient(self.target) as client:
            return client.list_tasks(limit=0).total


@pytest.fixture
def servers(tmp_path):
    started = [Server(tmp_path / name) for name in ("a", "b")]
    try:
        for server in started:
            server.db.parent.mkdir()
            server.start()
        yield started
    finally:
        for server in started:
            server.stop()


def both(servers: list[Server]) -> str:
    return ",".join(server.target for server in servers)


# -- targets --------------------------------------------------------------------------


def test_a_plain_list_becomes_grpcs_own_list_and_its_forms_pass_through():
    assert split("127.0.0.1:7701, 127.0.0.1:7702") == ("ipv4:127.0.0.1:7701,127.0.0.1:7702", "127.0.0.1:7701")
    assert split("[::1]:7701,[::1]:7702") == ("ipv6:[::1]:7701,[::1]:7702", "[::1]:7701")
    # A name in a list is looked up once; loopback names take IPv4, which every item has.
    assert split("localhost:7701,127.0.0.1:7702") == ("ipv4:127.0.0.1:7701,127.0.0.1:7702", "localhost:7701")
    assert split("ipv4:127.0.0.1:1,127.0.0.1:2") == ("ipv4:127.0.0.1:1,127.0.0.1:2", "127.0.0.1:1")
    for target in ("127.0.0.1:7701", "ipv4:127.0.0.1:1", "dns:///replicas.internal:7701", "unix:/s"):
        assert split(target) == (target, None)
    for bad, says in (
        ("127.0.0.1,127.0.0.1:2", "is not HOST:PORT"),
        ("127.0.0.1:1,[::1]:2", "all have IPv4 addresses"),
        (",", "no server address"),
    ):
        with pytest.raises(ValueError, match=says):
            split(bad)


async def test_a_list_of_servers_over_tls_checks_the_certificate_against_the_first(config, pki):  # noqa: F811
    """The certificate names localhost and 127.0.0.1: each form of a list presents one of them (gRPC's own
    `ipv4:` list would present the whole list, which no certificate names)."""
    service = await app.start(dataclasses.replace(config, tls_cert=pki.cert, tls_key=pki.key))
    port = service.grpc_port
    try:
        for target in (
            f"localhost:{port},127.0.0.1:{port}",
            f"127.0.0.1:{port},127.0.0.1:{port}",
            f"ipv4:127.0.0.1:{port},127.0.0.1:{port}",
        ):
            async with AsyncTaskHubClient(target, tls_ca=pki.ca, retry=NO_RETRY, timeout=10) as client:
                assert (await client.get_version()).pkg_version
    finally:
        await service.stop(0)


# -- two servers -----------------------------------------------------------------------


@SUBPROCESSES
@pytest.mark.parametrize("form", ["plain", "ipv4"])
def test_calls_spread_over_every_target(servers, form):
    target = both(servers) if form == "plain" else "ipv4:" + both(servers)
    with TaskHubClient(target) as client:
        for n in range(40):
            client.enqueue("indexCreation", f"index-{n}")
    counts = [server.stored() for server in servers]
    print("tasks on each server:", counts)
    assert sum(counts) == 40 and min(counts) >= 5


@SUBPROCESSES
async def test_the_async_client_spreads_its_calls_too(servers):
    # One after another: calls made at once, before the second connection is up, all go to the first.
    async with AsyncTaskHubClient(both(servers)) as client:
        for n in range(40):
            await client.enqueue("indexCreation", f"index-{n}")
    counts = [server.stored() for server in servers]
    assert sum(counts) == 40 and min(counts) >= 5


@SUBPROCESSES
def test_killing_one_server_costs_a_caller_a_retry_and_no_error(servers):
    """Two producers call on while one server is SIGKILLed: every call is answered. A call whose answer the
    kill lost was retried on the other server; there, on a database of its own, it is a second task, so each
    producer stores at most one more than it was told (on one database the idempotency key answers it)."""
    a, b = servers
    acknowledged: list[int] = []
    errors: list[BaseException] = []
    killed = threading.Event()

    def produce(name: str) -> None:
        with TaskHubClient(both(servers)) as client:
            for n in range(60):
                try:
                    client.enqueue("indexCreation", f"{name}-{n}")
                except BaseException as error:  # any error fails the test below
                    errors.append(error)
                    return
                acknowledged.append(n)
                if len(acknowledged) == 40 and not killed.is_set():
                    killed.set()
                    a.kill()

    producers = [threading.Thread(target=produce, args=(name,)) for name in ("p", "q")]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join(60)
    assert errors == [] and len(acknowledged) == 120 and killed.is_set()
    stored = a.stored() + b.stored()
    print("acknowledged", len(acknowledged), "stored", stored)
    assert 120 <= stored <= 120 + len(producers)


@SUBPROCESSES
def test_the_gateway_keeps_answering_when_a_server_dies(servers, tmp_path):
    a, b = servers
    port = free_port()
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "gateway",
            "--grpc-target",
            both(servers),
            "--http-listen",
            f"127.0.0.1:{port}",
            "--grace-seconds",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(200):
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                threading.Event().wait(0.05)
            statuses: list[int] = []
            killed = threading.Event()

            def produce(name: str) -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as own:
                    for n in range(30):
                        body = {"type": "indexCreation", "indexUid": f"{name}-{n}"}
                        statuses.append(own.post("/tasks", json=body, headers=JSON).status_code)
                        if len(statuses) == 20 and not killed.is_set():
                            killed.set()
                            a.kill()

            producers = [threading.Thread(target=produce, args=(name,)) for name in ("p", "q")]
            for producer in producers:
                producer.start()
            for producer in producers:
                producer.join(60)
            assert statuses == [202] * 60 and killed.is_set()
            assert http.get("/health").json() == {"status": "available"}
    finally:
        gateway.terminate()
        gateway.wait(10)
    assert 60 <= a.stored() + b.stored() <= 62  # a lost answer retried on the other database: one more


@SUBPROCESSES
async def test_a_worker_keeps_working_when_its_server_dies(servers):
    """The worker long-polls both; one dies (maybe under a poll, which goes on to the other); the tasks on the
    other are all run. (Its leases surviving a replica's death needs replicas of one database: PostgreSQL.)"""
    a, b = servers
    ran: list[int] = []
    worker = Worker(
        both(servers),
        {"documentAdditionOrUpdate": lambda job: ran.append(job.uid) or {"indexedDocuments": 1}},
        poll_seconds=1,
        lease_seconds=6,
    )
    running = asyncio.create_task(worker.run_async())
    try:
        await asyncio.sleep(0.5)  # let it poll both
        await asyncio.to_thread(a.kill)
        async with AsyncTaskHubClient(b.target) as client:
            uids = [
                (await client.enqueue("documentAdditionOrUpdate", "movies", {"receivedDocuments": 1})).uid
                for _ in range(5)
            ]
            finished = [await client.wait_for_task(uid, timeout=30) for uid in uids]
        assert [task.status for task in finished] == [TaskStatus.SUCCEEDED] * 5
        assert sorted(ran) == uids and not running.done()
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
    assert worker.processed == 5


@SUBPROCESSES
def test_the_cli_takes_several_targets_and_one_dead_costs_nothing(servers):
    a, b = servers
    a.kill()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKHUB_")}
    enqueue = [sys.executable, "-m", "taskhub.server.cli", "tasks", "enqueue", "indexCreation", "--index-uid", "x"]
    for flag in ([], ["--target", both(servers)]):
        done = subprocess.run(
            [*enqueue, *flag, "--json"],
            env=env | ({} if flag else {"TASKHUB_TARGET": both(servers)}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (done.returncode, done.stderr) == (0, "")
    assert b.stored() == 2
    refused = subprocess.run(
        [*enqueue, "--target", "127.0.0.1:1,[::1]:2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "must all have IPv4 addresses, or all IPv6 ones" in refused.stderr


# -- a lost answer, retried through another way to the same database -------------------------


async def _proxies(service) -> tuple[list[CuttingProxy], str]:
    proxies = [CuttingProxy(service.grpc_target) for _ in range(2)]
    targets = [await proxy.start() for proxy in proxies]
    return proxies, ",".join(targets)


async def _stored(service) -> int:
    async with AsyncTaskHubClient(service.grpc_target) as client:
        return (await client.list_tasks(limit=0)).total


async def _lose_the_answer(proxies: list[CuttingProxy], service, call) -> object:
    """Runs `call` with every answer swallowed until its task is stored, then cuts every connection."""
    for proxy in proxies:
        proxy.swallow = True
    running = asyncio.ensure_future(call())
    for _ in range(500):
        if await _stored(service) == 1:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the call never reached the server")
    assert not running.done()
    for proxy in proxies:
        proxy.cut()
    return await asyncio.wait_for(running, 20)


async def test_a_client_enqueue_whose_answer_is_lost_makes_one_task(service):
    proxies, target = await _proxies(service)
    try:
        retry = RetryPolicy(max_attempts=5, initial_backoff=0.2, max_backoff=1.0)
        async with AsyncTaskHubClient(target, retry=retry, timeout=20) as client:
            await client.get_version()
            summary = await _lose_the_answer(proxies, service, lambda: client.enqueue("dumpCreation"))
        assert summary.uid == 0 and sum(proxy.connections for proxy in proxies) >= 3  # answered on a new one
        assert await _stored(service) == 1
    finally:
        for proxy in proxies:
            await proxy.close()


async def test_a_gateway_enqueue_whose_answer_is_lost_makes_one_task(service):
    """No Idempotency-Key header: the gateway sends a key of its own, so gRPC's retry replays the first task."""
    proxies, target = await _proxies(service)
    gateway = await GatewayServer.start(target, "127.0.0.1:0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=30) as http:
            assert (await http.get("/health")).status_code == 200
            answer = await _lose_the_answer(
                proxies, service, lambda: http.post("/tasks", json={"type": "dumpCreation"}, headers=JSON)
            )
        assert (answer.status_code, answer.json()["taskUid"]) == (202, 0)
        assert await _stored(service) == 1
    finally:
        await gateway.stop(0)
        for proxy in proxies:
            await proxy.close()


async def test_a_watch_broken_with_its_server_resumes_through_another_with_no_gap_nor_repeat(service):
    """The proxy that carries the watch goes away (as its replica would): the client resumes after the last
    sequence it saw, through the other way to the same database, and every change comes once, in order."""
    proxies, target = await _proxies(service)
    seen: list[int] = []
    async with AsyncTaskHubClient(service.grpc_target) as producer, AsyncTaskHubClient(target) as client:

        async def watch() -> None:
            async for change in client.watch_tasks():
                seen.append(change.sequence)

        watcher = asyncio.create_task(watch())
        try:
            for _ in range(500):  # the watch is open: it sees every change from now
                if service.scheduler.hub.watchers == 1:
                    break
                await asyncio.sleep(0.01)
            for round_ in range(2):
                for n in range(10):
                    await producer.enqueue("indexCreation", f"index-{round_}-{n}")
                for _ in range(1_000):
                    if len(seen) >= 10 * (round_ + 1):
                        break
                    await asyncio.sleep(0.01)
                if round_ == 0:
                    carrier = max(proxies, key=lambda proxy: proxy.answered)
                    other = next(proxy for proxy in proxies if proxy is not carrier)
                    before = other.answered
                    await carrier.close()  # the watch breaks: UNAVAILABLE
            assert other.answered > before  # the second round came through the other
            assert len(seen) == 20 and seen == list(range(seen[0], seen[0] + 20))
            assert not watcher.done()
        finally:
            watcher.cancel()
            for proxy in proxies:
                await proxy.close()


@pytest.mark.slow  # waits for the pings to go unanswered (channels.KEEPALIVE_MS + KEEPALIVE_TIMEOUT_MS)
async def test_a_watch_on_a_server_gone_silent_resumes_through_another(service):
    """The way to the server goes silent with its connections open (a machine lost, a network cut): nothing
    ends the stream but the client's unanswered pings, then it resumes through the other, no gap, no repeat."""
    proxies, target = await _proxies(service)
    seen: list[int] = []
    async with AsyncTaskHubClient(service.grpc_target) as producer, AsyncTaskHubClient(target) as client:

        async def watch() -> None:
            async for change in client.watch_tasks():
                seen.append(change.sequence)

        watcher = asyncio.create_task(watch())
        try:
            for _ in range(500):
                if service.scheduler.hub.watchers == 1:
                    break
                await asyncio.sleep(0.01)
            await producer.enqueue("indexCreation", "before")
            for _ in range(500):
                if seen:
                    break
                await asyncio.sleep(0.01)
            carrier = max(proxies, key=lambda proxy: proxy.answered)
            carrier.frozen = True
            for n in range(5):
                await producer.enqueue("indexCreation", f"after-{n}")
            limit = (KEEPALIVE_MS + KEEPALIVE_TIMEOUT_MS) / 1000 + 20
            for _ in range(int(limit / 0.05)):
                if len(seen) == 6:
                    break
                await asyncio.sleep(0.05)
            assert seen == list(range(seen[0], seen[0] + 6)) and not watcher.done()
        finally:
            watcher.cancel()
            for proxy in proxies:
                await proxy.close()
