"""Cross-site protection: a foreign page cannot drive the queue through the gateway, nor rebind a name to it.

A real gateway on 127.0.0.1 (`taskhub serve`'s embedded one, and `taskhub gateway` as a
process), reached over real HTTP with the `Origin` and `Host` headers a browser would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys

import httpx

from conftest import MASTER_KEY
from gateway_bodies import ERROR_KEYS, LINK
from taskhub.server import app

FOREIGN = "http://evil.example"
TASK = {"type": "indexCreation", "indexUid": "movies"}


@contextlib.asynccontextmanager
async def gateway(config, **settings):
    """`taskhub serve` with its gateway on 127.0.0.1 (a free port); answers (url, port)."""
    service = await app.start(dataclasses.replace(config, no_http=False, http_listen="127.0.0.1:0", **settings))
    try:
        yield service, f"http://127.0.0.1:{service.gateway.port}", service.gateway.port
    finally:
        await service.stop(0)


def _refused(response: httpx.Response, code: str, status: int = 403) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ERROR_KEYS and body["code"] == code
    assert body["type"] == "auth" and body["link"] == LINK + code
    return body


async def _total(http: httpx.AsyncClient, url: str) -> int:
    return (await http.get(f"{url}/tasks")).json()["total"]


async def test_a_foreign_origin_cannot_change_anything(config):
    async with gateway(config) as (_, url, _port), httpx.AsyncClient() as http:
        await http.post(f"{url}/tasks", json=TASK)
        foreign = {"Origin": FOREIGN}
        calls = [
            # What a form or `fetch(..., {mode: "no-cors"})` sends with no preflight.
            (
                "POST",
                "/tasks",
                {"content": b'{"type": "dumpCreation"}', "headers": {**foreign, "content-type": "text/plain"}},
            ),
            ("POST", "/tasks/cancel?statuses=enqueued", {"headers": foreign}),
            ("DELETE", "/tasks?statuses=enqueued", {"headers": foreign}),
            ("POST", "/keys", {"json": {"actions": ["*"], "indexes": ["*"], "expiresAt": None}, "headers": foreign}),
            ("PATCH", "/keys/x", {"json": {"name": "x"}, "headers": foreign}),
            ("DELETE", "/keys/x", {"headers": foreign}),
            # A sandboxed frame or a file sends `null`.
            ("POST", "/tasks/cancel?statuses=enqueued", {"headers": {"Origin": "null"}}),
            # Same host, other port: another origin.
            ("POST", "/tasks/cancel?statuses=enqueued", {"headers": {"Origin": "http://127.0.0.1:1"}}),
        ]
        for method, path, extra in calls:
            body = _refused(await http.request(method, f"{url}{path}", **extra), "cross_origin_request_refused")
            assert "`--http-allowed-origins`" in body["message"], body
        assert await _total(http, url) == 1


async def test_same_origin_and_originless_writes_pass(config):
    async with gateway(config) as (_, url, port), httpx.AsyncClient() as http:
        for origin in (None, f"http://127.0.0.1:{port}", f"HTTP://127.0.0.1:{port}"):
            headers = {} if origin is None else {"Origin": origin}
            assert (await http.post(f"{url}/tasks", json=TASK, headers=headers)).status_code == 202
            assert (await http.post(f"{url}/tasks/cancel?uids=0", headers=headers)).status_code == 202
        localhost = f"http://localhost:{port}"
        response = await http.post(
            f"{url}/tasks", json=TASK, headers={"Host": f"localhost:{port}", "Origin": localhost}
        )
        assert response.status_code == 202
        # Reading with a foreign origin is no write: the browser alone decides what the page may see.
        assert (await http.get(f"{url}/tasks", headers={"Origin": FOREIGN})).status_code == 200


async def test_configured_origins_pass(config):
    async with gateway(config, http_allowed_origins="https://admin.example, https://ops.example") as (_, url, _p):
        async with httpx.AsyncClient() as http:
            for origin in ("https://admin.example", "https://ops.example"):
                response = await http.post(f"{url}/tasks", json=TASK, headers={"Origin": origin})
                assert response.status_code == 202
            _refused(
                await http.post(f"{url}/tasks", json=TASK, headers={"Origin": "https://admin.example:8443"}),
                "cross_origin_request_refused",
            )
    async with gateway(config, http_allowed_origins="*") as (_, url, _p), httpx.AsyncClient() as http:
        assert (await http.post(f"{url}/tasks", json=TASK, headers={"Origin": FOREIGN})).status_code == 202


async def test_a_foreign_host_is_refused(config):
    async with gateway(config) as (_, url, port), httpx.AsyncClient() as http:
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", "localhost", f"[::2]:{port}"):
            body = _refused(await http.get(f"{url}/tasks", headers={"Host": host}), "host_not_allowed")
            assert "`--http-allowed-hosts`" in body["message"]
            _refused(await http.post(f"{url}/tasks", json=TASK, headers={"Host": host}), "host_not_allowed")
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}"):
            assert (await http.get(f"{url}/tasks", headers={"Host": host})).status_code == 200, host
        # A health probe may call it by any name: it tells nothing.
        assert (await http.get(f"{url}/health", headers={"Host": "10.1.2.3:7700"})).status_code == 200
        assert await _total(http, url) == 0


async def test_configured_hosts_pass(config):
    async with gateway(config, http_allowed_hosts="tasks.example.com,other.example:8080") as (_, url, port):
        async with httpx.AsyncClient() as http:
            for host in ("tasks.example.com", "tasks.example.com:443", "other.example:8080", f"localhost:{port}"):
                assert (await http.get(f"{url}/tasks", headers={"Host": host})).status_code == 200, host
            # Behind a proxy the page's origin is the proxy's name.
            response = await http.post(
                f"{url}/tasks", json=TASK, headers={"Host": "tasks.example.com", "Origin": "https://tasks.example.com"}
            )
            assert response.status_code == 202
            _refused(await http.get(f"{url}/tasks", headers={"Host": "other.example:8081"}), "host_not_allowed")
    async with gateway(config, http_allowed_hosts="*") as (_, url, _p), httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/tasks", headers={"Host": "anything.example"})).status_code == 200


async def test_with_a_master_key_the_checks_hold_too(config):
    async with gateway(config, master_key=MASTER_KEY) as (_, url, port), httpx.AsyncClient() as http:
        master = {"Authorization": f"Bearer {MASTER_KEY}"}
        _refused(
            await http.post(f"{url}/tasks", json=TASK, headers={**master, "Origin": FOREIGN}),
            "cross_origin_request_refused",
        )
        _refused(await http.get(f"{url}/tasks", headers={**master, "Host": f"evil.example:{port}"}), "host_not_allowed")
        assert (await http.post(f"{url}/tasks", json=TASK, headers=master)).status_code == 202


async def test_taskhub_gateway_takes_the_allowed_hosts_and_origins(service, unused_tcp_port):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskhub.server.cli",
        "gateway",
        "--grpc-target",
        service.grpc_target,
        "--http-listen",
        f"127.0.0.1:{unused_tcp_port}",
        "--grace-seconds",
        "1",
        "--http-allowed-hosts",
        "tasks.example.com",
        "--http-allowed-origins",
        "https://admin.example",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                assert process.returncode is None, (await process.stderr.read()).decode()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            assert (await http.get(f"{url}/tasks", headers={"Host": "tasks.example.com"})).status_code == 200
            _refused(await http.get(f"{url}/tasks", headers={"Host": "evil.example"}), "host_not_allowed")
            response = await http.post(f"{url}/tasks", json=TASK, headers={"Origin": "https://admin.example"})
            assert response.status_code == 202
            _refused(
                await http.post(f"{url}/tasks", json=TASK, headers={"Origin": FOREIGN}), "cross_origin_request_refused"
            )
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.communicate(), timeout=20)
