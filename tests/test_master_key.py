"""A master key shorter than 16 bytes is refused at start, as Meilisearch refuses one."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from taskhub.server import app
from test_serve import free_port


def test_serve_refuses_a_short_master_key(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskhub.server.cli",
            "serve",
            "--db",
            str(tmp_path / "q.db"),
            "--grpc-listen",
            f"127.0.0.1:{free_port()}",
            "--no-http",
            "--master-key",
            "fifteen-bytes!!",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "the master key must be at least 16 bytes; this one has 15" in result.stderr
    assert not (tmp_path / "q.db").exists()  # refused before anything was opened


@pytest.mark.parametrize("key", ["k", "é" * 7 + "x"])  # bytes, not characters: 15 of them
async def test_start_refuses_a_short_master_key_and_takes_sixteen_bytes(config, key):
    with pytest.raises(ValueError, match="at least 16 bytes"):
        await app.start(dataclasses.replace(config, master_key=key), background=False)
    service = await app.start(dataclasses.replace(config, master_key="é" * 8), background=False)
    await service.stop(0)
