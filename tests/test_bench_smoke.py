"""Every bench script runs with tiny sizes, exits 0 and prints a ratio line, so none of them rots.

The figures themselves are not checked: a shared CI machine is too noisy for targets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs each bench script in a subprocess

BENCH = Path(__file__).resolve().parent.parent / "bench"

TINY = {
    "list_tasks.py": ["--tasks", "2000", "--seconds", "0.05", "--min-runs", "2"],
    "get_task.py": ["--tasks", "200", "--seconds", "0.2", "--rounds", "1", "--concurrency", "4"],
    "enqueue.py": ["--seconds", "0.2", "--rounds", "1", "--producers", "8"],
    "end_to_end.py": ["--tasks", "100", "--workers", "2", "--timeout", "60"],
    "watchers.py": ["--watchers", "50", "--seconds", "0.5", "--channels", "2", "--rate", "200"],
    "fanout.py": ["--streams", "25", "--sse", "5", "--seconds", "0.5", "--channels", "2"],
    "memory.py": ["--tasks", "2000", "--settle", "0.1"],
}


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=120, cwd=BENCH.parent
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(150)
@pytest.mark.parametrize("script", sorted(TINY))
def test_bench_script_prints_a_ratio(script):
    out = run(script, *TINY[script])
    assert any(line.startswith("ratio ") for line in out.splitlines()), out
    if script in ("list_tasks.py", "get_task.py"):  # their p99s and ratios are read against it
        assert "machine noise (spinning)" in out, out


@pytest.mark.timeout(150)
def test_loader_fills_a_database_the_server_serves(tmp_path):
    out = run("load_tasks.py", "--tasks", "3000", "--db", str(tmp_path / "tasks.db"), "--check")
    assert "check: OK" in out, out
