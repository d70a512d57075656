"""TypeScript stubs made by `buf generate` with the protoc-gen-es entry of buf.gen.yaml, compiled by tsc
(strict) with tests/ts/call.ts, calling a real server through Connect's gRPC transport for Node.

Without node or npm the test skips locally; under CI (`CI` set) it fails instead, since it must run there.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

from taskhub.client import AsyncTaskHubClient

pytestmark = pytest.mark.slow  # generates, compiles and runs TypeScript

ROOT = pathlib.Path(__file__).resolve().parent.parent
TS = ROOT / "tests" / "ts"
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the TypeScript stubs test must run in CI: {reason}")
    pytest.skip(reason)


def _run(*command: str | pathlib.Path, cwd: pathlib.Path, path: str | None = None) -> None:
    env = {**os.environ, "PATH": path} if path else None
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> pathlib.Path:
    """gen/ts from buf.gen.yaml's TypeScript entry, and call.ts beside it, compiled to dist/."""
    if shutil.which("node") is None:
        _missing("node is not installed")
    if not BUF.exists():
        _missing("buf is not installed in tools/ (scripts/test.sh runs npm ci there)")
    if not (TS / "node_modules" / "@bufbuild" / "protoc-gen-es").is_dir():
        if shutil.which("npm") is None:
            _missing("npm is not installed")
        _run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error", cwd=TS)
    work = tmp_path_factory.mktemp("ts")
    template = yaml.safe_load((ROOT / "buf.gen.yaml").read_text())
    template["plugins"] = [p for p in template["plugins"] if p.get("local") == "protoc-gen-es"]
    assert template["plugins"], "buf.gen.yaml has no protoc-gen-es entry"
    bins = str(TS / "node_modules" / ".bin")
    _run(
        BUF,
        "generate",
        ROOT,
        "--template",
        json.dumps(template),
        cwd=work,
        path=f"{bins}{os.pathsep}{os.environ['PATH']}",
    )
    assert sorted(p.name for p in (work / "gen" / "ts" / "taskhub" / "v1").iterdir()) == [
        "batch_pb.ts",
        "errors_pb.ts",
        "key_service_pb.ts",
        "metrics_service_pb.ts",
        "operations_service_pb.ts",
        "task_pb.ts",
        "task_service_pb.ts",
        "webhook_service_pb.ts",
        "worker_service_pb.ts",
    ]
    for name in ("call.ts", "tsconfig.json", "package.json"):
        shutil.copy(TS / name, work / name)
    (work / "node_modules").symlink_to(TS / "node_modules", target_is_directory=True)
    _run(TS / "node_modules" / ".bin" / "tsc", "-p", ".", cwd=work)
    return work / "dist" / "call.js"


async def test_generated_typescript_calls_the_server(compiled, service):
    node = await asyncio.create_subprocess_exec(
        "node",
        str(compiled),
        service.grpc_target,
        "movies",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(node.communicate(), 60)
    assert node.returncode == 0, err.decode()
    enqueued, got, listing, error = [json.loads(line) for line in out.decode().splitlines()]

    assert enqueued == {"event": "enqueued", "uid": 0, "status": "ENQUEUED"}
    assert got == {
        "event": "get",
        "uid": 0,
        "indexUid": "movies",
        "type": "DOCUMENT_ADDITION_OR_UPDATE",
        "receivedDocuments": 3,
    }
    assert listing == {"event": "list", "uids": [0], "total": 1}
    assert error == {
        "event": "error",
        "code": "NotFound",
        "reason": "task_not_found",
        "message": "Task `4294967295` not found.",
    }
    # What TypeScript enqueued is what Python reads back.
    async with AsyncTaskHubClient(service.grpc_target) as client:
        task = (await client.get_task(0)).to_dict()
    assert (task["indexUid"], task["type"], task["details"]) == (
        "movies",
        "documentAdditionOrUpdate",
        {"receivedDocuments": 3, "indexedDocuments": None},
    )
