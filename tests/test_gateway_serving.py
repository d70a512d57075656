"""Serving the gateway: beside the gRPC server (`taskhub serve`) and alone (`taskhub gateway`).

Both commands run as real processes on 127.0.0.1 and must stop cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import sys

import httpx
import pytest

from taskhub.server import app


async def _wait_healthy(url: str, process: asyncio.subprocess.Process | None = None) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            if process is not None and process.returncode is not None:
                raise AssertionError(f"exited with {process.returncode}: {(await process.stderr.read()).decode()}")
            try:
                if (await http.get(f"{url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never became healthy")


async def _command(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskhub.server.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _terminate(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "stopped cleanly" in log and "Traceback" not in log
    return log


async def test_start_serves_the_gateway_in_the_same_loop_and_stop_closes_it(config):
    service = await app.start(dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0"))
    url = f"http://127.0.0.1:{service.gateway.port}"
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/health")).json() == {"status": "available"}
            response = await http.post(f"{url}/tasks/", json={"type": "snapshotCreation"})
            assert response.status_code == 202 and response.json()["type"] == "snapshotCreation"
    finally:
        await service.stop(0)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{url}/health")


async def test_a_taken_http_port_fails_start_cleanly(config):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(OSError):
            await app.start(dataclasses.replace(config, no_http=False, http_listen=listen))
    # The gRPC server and the store it had opened were stopped: the database opens again.
    service = await app.start(config)
    await service.stop(0)


async def test_taskhub_serve_runs_grpc_and_gateway_and_stops_on_sigterm(tmp_path, unused_tcp_port_factory):
    grpc_port, http_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    process = await _command(
        "serve",
        "--db",
        str(tmp_path / "taskhub.db"),
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        "--snapshots-dir",
        str(tmp_path / "s"),
        "--dumps-dir",
        str(tmp_path / "d"),
        "--grace-seconds",
        "1",
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        await _wait_healthy(url, process)
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{url}/tasks", json={"type": "indexCreation", "indexUid": "movies"})
            assert response.status_code == 202
            assert (await http.get(f"{url}/tasks/0")).json()["details"] == {"primaryKey": None}
    finally:
        if process.returncode is None:
            log = await _terminate(process)
    assert f"127.0.0.1:{http_port}" in log


async def test_taskhub_gateway_alone_in_front_of_a_server(service, unused_tcp_port):
    process = await _command(
        "gateway",
        "--grpc-target",
        service.grpc_target,
        "--http-listen",
        f"127.0.0.1:{unused_tcp_port}",
        "--grace-seconds",
        "1",
    )
    url = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        await _wait_healthy(url, process)
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{url}/tasks", json={"type": "dumpCreation"})
            assert response.status_code == 202
            assert (await http.get(f"{url}/tasks")).json()["total"] == 1
    finally:
        if process.returncode is None:
            await _terminate(process)


async def test_taskhub_gateway_on_a_taken_port_exits_1(unused_tcp_port):
    with socket.create_server(("127.0.0.1", unused_tcp_port)):
        process = await _command("gateway", "--http-listen", f"127.0.0.1:{unused_tcp_port}")
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 1
    assert stderr.decode().startswith("taskhub: ") and "Address already in use" in stderr.decode()


async def test_the_gateway_never_imports_the_server():
    code = (
        "import sys, taskhub.gateway.app, taskhub.gateway.serving;"
        " print(sorted(m for m in sys.modules if m.startswith('taskhub.server')))"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE)
    stdout, _ = await process.communicate()
    assert (process.returncode, stdout.decode().strip()) == (0, "[]")
