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
    "start.py": ["--tasks", "2000", "--enqueue", "200"],
    "delayed.py": ["--rate", "100", "--seconds", "1", "--lead", "0.5", "--workers", "2"],
    "postgres.py": ["--tasks", "200", "--workers", "2", "--read-seconds", "0.1", "--notify-seconds", "0.2"],
    "claims.py": ["--backlog", "1000", "--small", "200", "--claim", "300", "--workers", "2"],
    "failover.py": ["--seconds", "0.3", "--rounds", "1", "--callers", "4"],
    "metrics_scrape.py": ["--tasks", "2000", "--indexes", "50", "--scrapes", "5"],
    "tracing.py": ["--seconds", "0.2", "--rounds", "1", "--producers", "4"],
    "activity.py": ["--tasks", "3000", "--recent", "1000", "--seconds", "0.05", "--min-runs", "2"],
    "webhooks.py": ["--tasks", "200", "--rounds", "1"],
}
# These start a throwaway PostgreSQL cluster (tests/postgres_cluster.py).
NEEDS_POSTGRES = {"postgres.py", "claims.py"}


def run(script: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(150)
@pytest.mark.parametrize("script", sorted(TINY))
def test_bench_script_prints_a_ratio(script, request):
    if script in NEEDS_POSTGRES:
        request.getfixturevalue("postgres_cluster")  # skipped where PostgreSQL is missing, failed in CI
    out = run(script, *TINY[script])
    assert any(line.startswith("ratio ") for line in out.splitlines()), out
    if script in ("list_tasks.py", "get_task.py"):  # their p99s and ratios are read against it
        assert "machine noise (spinning)" in out, out


@pytest.mark.timeout(150)
def test_loader_fills_a_database_the_server_serves(tmp_path):
    out = run("load_tasks.py", "--tasks", "3000", "--db", str(tmp_path / "tasks.db"), "--check")
    assert "check: OK" in out, out


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=BENCH.parent, check=True, capture_output=True, text=True).stdout


@pytest.mark.timeout(600)
def test_compare_puts_two_revisions_side_by_side():
    """HEAD (checked out as a worktree) against this working tree, all four benches, tiniest sizes, 2 rounds."""
    out = run("compare.py", "--baseline", "HEAD", "--size", "tiny", "--rounds", "2", timeout=540)
    head = git("rev-parse", "--short=7", "HEAD").strip()
    lines = out.splitlines()
    assert f"| bench | figure | baseline {head} | candidate working tree | cand/base | spread | |" in lines, out
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines if line.startswith("| ")][1:]
    figures = {(bench, name): (a, b, ratio, spread) for bench, name, a, b, ratio, spread, _ in rows}
    for key in [
        ("end_to_end", "tasks/s [EnqueueTask]"),
        ("end_to_end", "tasks/s [EnqueueTasks of 100]"),
        ("get_task", "GetTask calls/s"),
        ("list_tasks", "(no filter) p99 ms"),
        ("memory", "RSS loaded, after reads MiB"),
    ]:
        assert key in figures, out
    for (bench, name), (a, b, ratio, spread) in figures.items():
        # Both medians and their ratio, and a spread from two runs a side.
        base, cand = float(a.replace(",", "")), float(b.replace(",", ""))
        if not base or not cand:  # a quiet machine's noise line can read 0.00%: no ratio, no spread
            continue
        assert float(ratio) == pytest.approx(cand / base, rel=0.02), (bench, name, out)
        assert spread.endswith("%"), (bench, name, out)
    assert "taskhub-compare-" not in git("worktree", "list"), "the baseline's worktree was left behind"
