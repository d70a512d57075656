"""The dashboard end to end in a real browser: Debian's chromium, driven by playwright-core from Node.

A real server (its background scheduler runs cancelations and dumps) and a real uvicorn gateway on
127.0.0.1; `tests/browser/dashboard.mjs` drives the page. When the page needs this side to act, as a
worker would or as an operator restarting the gateway, the script prints `@@ {"op": ...}` and waits
for the answer on its stdin. Screenshots go to `artifacts/` (git-ignored).

Without node or chromium the tests skip, saying what is missing; under CI (`CI` set) they fail instead,
as scripts/test.sh installs both there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pathlib
import shutil

import httpx
import pytest

from conftest import MASTER_KEY
from helpers import finish, npm_install, start
from taskhub.gateway.serving import GatewayServer
from taskhub.server import app

pytestmark = pytest.mark.slow  # drives chromium

ROOT = pathlib.Path(__file__).parent.parent
BROWSER_DIR = pathlib.Path(__file__).parent / "browser"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("TASKHUB_CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "needs node and npm"
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"needs chromium at {CHROMIUM} (`apt-get install chromium`, which scripts/test.sh does as root;"
            " or set TASKHUB_CHROMIUM)"
        )
    return None


def _require_browser() -> None:
    reason = _missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: it {reason}")
    pytest.skip(reason)


class Live:
    """The service and a gateway in front of it that the browser script can have stopped and started again."""

    def __init__(self, service) -> None:
        self.service = service
        self.gateway: GatewayServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start_gateway(self) -> None:
        # Short heartbeats and grace: a restart in the test takes a moment, not seconds.
        self.gateway = await GatewayServer.start(
            self.service.grpc_target, f"127.0.0.1:{self.port}", grace=0.5, heartbeat=5
        )
        self.port = self.gateway.port

    async def stop_gateway(self) -> None:
        gateway, self.gateway = self.gateway, None
        await gateway.stop()

    async def act(self, request: dict) -> dict:
        """One request of the browser script."""
        op = request["op"]
        if op == "start":
            await start(self.service, request["uid"])
        elif op == "stop-gateway":
            await self.stop_gateway()
            if "finish" in request:  # a change the page must catch up with once it reconnects
                await finish(self.service, request["finish"])
        elif op == "start-gateway":
            await self.start_gateway()
        else:
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True}

    async def close(self) -> None:
        if self.gateway is not None:
            await self.stop_gateway()
        await self.service.stop(0)


@pytest.fixture
async def browser_ready():
    _require_browser()
    await npm_install(BROWSER_DIR, "playwright-core", "ci")
    ARTIFACTS.mkdir(exist_ok=True)


async def _live(config, **changes) -> Live:
    live = Live(await app.start(dataclasses.replace(config, **changes)))
    await live.start_gateway()
    return live


async def run_script(live: Live, mode: str, *args: str) -> dict:
    """Runs dashboard.mjs, answering its requests; answers its final `done` line."""
    process = await asyncio.create_subprocess_exec(
        "node",
        "dashboard.mjs",
        mode,
        live.url,
        str(ARTIFACTS),
        *args,
        cwd=BROWSER_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    done: dict = {}

    async def converse() -> None:
        while line := await process.stdout.readline():
            text = line.decode().rstrip("\n")
            if not text.startswith("@@ "):
                log.append(text)
                continue
            request = json.loads(text[3:])
            if request.get("done"):
                done.update(request)
                continue
            try:
                reply = await live.act(request)
            except Exception as error:  # the script reports it, with its own context
                reply = {"error": repr(error)}
            process.stdin.write((json.dumps(reply) + "\n").encode())
            await process.stdin.drain()

    try:
        _, stderr = await asyncio.wait_for(asyncio.gather(converse(), process.stderr.read()), timeout=90)
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0 and done, "\n".join(log) + "\n" + stderr.decode()
    return done


async def _post(live: Live, body: dict, headers: dict | None = None) -> int:
    async with httpx.AsyncClient(base_url=live.url, headers=headers) as http:
        response = await http.post("/tasks", json=body)
    assert response.status_code == 202, response.text
    return response.json()["taskUid"]


@pytest.mark.timeout(120)
async def test_the_dashboard_in_a_browser(browser_ready, config):
    live = await _live(config, grace_seconds=0.5)
    try:
        # 0 movies succeeded, 1 books failed, 2 movies enqueued, 3 books processing, 4 a dump (the server
        # runs it: succeeded), 5 movies enqueued.
        bodies = [
            {"type": "documentAdditionOrUpdate", "indexUid": "movies", "details": {"receivedDocuments": 120}},
            {"type": "indexCreation", "indexUid": "books", "details": {"primaryKey": "isbn"}},
            {"type": "settingsUpdate", "indexUid": "movies", "details": {"rankingRules": ["words", "typo"]}},
            {"type": "documentAdditionOrUpdate", "indexUid": "books", "details": {"receivedDocuments": 40}},
            {"type": "dumpCreation"},
            {"type": "indexUpdate", "indexUid": "movies", "details": {"primaryKey": "id"}},
        ]
        # The dump and what follows it come after the leases: no worker gets one while a server task waits.
        assert [await _post(live, body) for body in bodies[:4]] == [0, 1, 2, 3]
        service = live.service
        await start(service, 0)
        await finish(service, 0, details={"indexedDocuments": 118})
        await start(service, 1)
        await finish(
            service,
            1,
            error={
                "message": "Index `books` already exists.",
                "code": "index_already_exists",
                "type": "invalid_request",
                "link": "https://docs.meilisearch.com/errors#index_already_exists",
            },
        )
        await start(service, 3)
        assert [await _post(live, body) for body in bodies[4:]] == [4, 5]
        async with httpx.AsyncClient(base_url=live.url) as http:
            for _ in range(200):
                if (await http.get("/tasks/4")).json()["status"] == "succeeded":
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the dump never ran")

        done = await run_script(live, "open")
        assert done["checks"] >= 12
        assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    finally:
        await live.close()


@pytest.mark.timeout(120)
async def test_the_dashboard_with_a_master_key(browser_ready, config):
    live = await _live(config, grace_seconds=0.5, master_key=MASTER_KEY)
    try:
        master = {"Authorization": f"Bearer {MASTER_KEY}"}
        assert await _post(live, {"type": "indexCreation", "indexUid": "movies"}, master) == 0
        assert await _post(live, {"type": "indexCreation", "indexUid": "books"}, master) == 1
        done = await run_script(live, "key", MASTER_KEY)
        assert done["checks"] >= 6
    finally:
        await live.close()
