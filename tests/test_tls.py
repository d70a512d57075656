"""TLS on loopback: a throwaway CA and a `localhost`/127.0.0.1 certificate made here.

The server and the gateway serve with `--tls-cert`/`--tls-key`; the clients (Python,
the CLI, the worker, the standalone gateway toward gRPC) verify them with `--tls-ca`;
plaintext clients are refused.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import json
import os
import pathlib
import signal
import ssl
import subprocess
import sys
import time

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskhub.client import NO_RETRY, AsyncTaskHubClient, TaskHubClient
from taskhub.client.worker import Worker
from taskhub.errors import TaskHubError
from taskhub.server import app
from test_serve import free_port
from test_shutdown import connect


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(subject: str, key, issuer: x509.Name, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclasses.dataclass
class Pki:
    ca: str
    cert: str
    key: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A CA, and a server certificate it signed for localhost and 127.0.0.1, as PEM files."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskhub test CA")])
    ca = _certificate("taskhub test CA", ca_key, ca_name, ca_key, ca=True)
    server = _certificate("localhost", server_key, ca_name, ca_key, ca=False)
    paths = Pki(ca=str(folder / "ca.pem"), cert=str(folder / "server.pem"), key=str(folder / "server.key"))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(_pem(server_key))
    return paths


def _https(pki: Pki) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki.ca), timeout=10)


async def test_serve_with_tls_answers_clients_with_the_ca_and_refuses_plaintext(config, pki):
    service = await app.start(
        dataclasses.replace(config, tls_cert=pki.cert, tls_key=pki.key, no_http=False, http_listen="127.0.0.1:0")
    )
    target = f"localhost:{service.grpc_port}"
    base = f"https://127.0.0.1:{service.gateway.port}"
    try:
        async with AsyncTaskHubClient(target, tls_ca=pki.ca) as client:
            assert (await client.enqueue("indexCreation", "movies")).uid == 0
        with TaskHubClient(f"127.0.0.1:{service.grpc_port}", tls_ca=pki.ca) as client:  # in a thread: the loop serves
            assert (await asyncio.to_thread(client.get_task, 0)).index_uid == "movies"
        # The embedded gateway reaches its own gRPC server while TLS is on.
        async with _https(pki) as https:
            answer = await https.get(f"{base}/tasks/0")
            assert (answer.status_code, answer.json()["indexUid"]) == (200, "movies")
            created = await https.post(f"{base}/tasks", json={"type": "indexCreation", "indexUid": "books"})
            assert created.status_code == 202, created.text

        async with AsyncTaskHubClient(target, retry=NO_RETRY, timeout=5) as plaintext:
            with pytest.raises(TaskHubError) as refused:
                await plaintext.get_task(0)
            assert refused.value.code == "unavailable"
        # TLS, but trusting only the system's roots: the certificate is not trusted.
        with TaskHubClient(target, retry=NO_RETRY, timeout=5, credentials=grpc.ssl_channel_credentials()) as other:
            with pytest.raises(TaskHubError) as untrusted:
                await asyncio.to_thread(other.get_task, 0)
            assert untrusted.value.code == "unavailable"
        async with httpx.AsyncClient(timeout=5) as http:
            with pytest.raises(httpx.HTTPError):
                await http.get(f"http://127.0.0.1:{service.gateway.port}/tasks/0")
        async with httpx.AsyncClient(timeout=5) as http:
            with pytest.raises(httpx.ConnectError):  # verified against the system's roots only
                await http.get(f"{base}/tasks/0")
    finally:
        await service.stop(0)


async def test_a_worker_leases_over_tls(config, pki):
    service = await app.start(dataclasses.replace(config, tls_cert=pki.cert, tls_key=pki.key))
    try:
        target = f"localhost:{service.grpc_port}"
        async with AsyncTaskHubClient(target, tls_ca=pki.ca) as client:
            await client.enqueue("indexCreation", "movies")
            done = []
            worker = Worker(
                target, {"indexCreation": lambda task: done.append(task.uid) or {}}, tls_ca=pki.ca, poll_seconds=0.5
            )
            await worker.run_async(max_batches=1)
            assert done == [0]
            assert (await client.wait_for_task(0, timeout=10)).status == "succeeded"
    finally:
        await service.stop(0)


def wait_serving_tls(target: str, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(pathlib.Path(pki.ca).read_bytes())
    deadline = time.monotonic() + 20
    with grpc.secure_channel(target, credentials) as channel:
        while True:
            try:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "taskhub.server.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.slow  # `taskhub serve`, `taskhub gateway` and the CLI as subprocesses
def test_the_cli_and_the_standalone_gateway_over_tls(tmp_path, pki):
    grpc_port, http_port = free_port(), free_port()
    tls = ["--tls-cert", pki.cert, "--tls-key", pki.key]
    # The certificate comes from the environment, its key from a flag.
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(tmp_path / "q.db"),
            "--no-http",
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--tls-key",
            pki.key,
        ],
        env={**os.environ, "TASKHUB_TLS_CERT": pki.cert},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    gateway = None
    try:
        wait_serving_tls(f"localhost:{grpc_port}", pki)
        target = ["--target", f"localhost:{grpc_port}"]
        enqueued = _run("tasks", "enqueue", "indexCreation", "--index-uid", "movies", *target, "--tls-ca", pki.ca)
        assert enqueued.returncode == 0, enqueued.stderr
        listed = _run("tasks", "list", "--json", *target, env={"TASKHUB_TLS_CA": pki.ca})
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["results"][0]["indexUid"] == "movies"
        keys = _run("keys", "list", *target, "--tls-ca", pki.ca)
        assert "missing_master_key" in keys.stderr  # an answer from the server, over TLS
        plaintext = _run("tasks", "list", *target, "--rpc-timeout", "3")
        assert plaintext.returncode != 0 and "Cannot reach a taskhub server" in plaintext.stderr

        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskhub.server.cli",
                "gateway",
                "--grpc-target",
                f"localhost:{grpc_port}",
                "--tls-ca",
                pki.ca,
                "--http-listen",
                f"127.0.0.1:{http_port}",
                *tls,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        connect(http_port).close()
        with httpx.Client(verify=ssl.create_default_context(cafile=pki.ca), timeout=10) as https:
            answer = https.get(f"https://localhost:{http_port}/tasks/0")
        assert (answer.status_code, answer.json()["indexUid"]) == (200, "movies")
    finally:
        for proc in (gateway, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.communicate(timeout=20)
                finally:
                    if proc.poll() is None:
                        proc.kill()
    assert server.returncode == 0


async def test_a_certificate_and_key_that_do_not_pair_are_named_at_start(config, pki):
    with pytest.raises(ValueError, match=r"--tls-cert .* --tls-key"):
        await app.start(dataclasses.replace(config, tls_cert=pki.key, tls_key=pki.cert))
    # Nothing was left held: the same database starts at once.
    service = await app.start(config)
    await service.stop(0)
