"""What every bench script shares: a taskhub server in a subprocess, percentiles, RSS, the result lines.

Bench scripts import it as `harness` (they run as `python bench/NAME.py`, so `bench/` is on
sys.path). Every line a bench prints about a figure goes through `figure()` and `verdict()`,
so the output reads the same everywhere and the smoke test can look for `ratio`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Latency:
    """p50/p99 of a list of durations in seconds, shown in milliseconds."""

    samples: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50) * 1000

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99) * 1000

    def __str__(self) -> str:
        return f"p50 {self.p50:8.3f} ms  p99 {self.p99:8.3f} ms  (n={len(self.samples)})"


async def phase(call, make_request, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    """Calls as fast as `concurrency` callers can for `seconds`; answers the count and latencies."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []

    async def caller() -> None:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            await call(make_request(), timeout=10)
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return len(latencies), latencies


def machine_noise(seconds: float = 0.5) -> None:
    """Prints how much of a spinning core this machine takes away, in gaps of over 20 us.

    On a shared VM the gaps (other tenants, the host's memory scanning) land in any call
    at random, so they set the floor of a sub-millisecond p99: with N gaps of 50 us or more
    a second, a call of T seconds is hit by one with a chance of about N x T.
    """
    gaps: list[float] = []
    last = time.perf_counter()
    end = last + seconds
    while last < end:
        now = time.perf_counter()
        if now - last > 20e-6:
            gaps.append(now - last)
        last = now
    long = sum(1 for gap in gaps if gap >= 50e-6) / seconds
    figure(
        "machine noise (spinning)",
        f"{len(gaps) / seconds:,.0f} gaps/s over 20 us, {long:,.0f}/s over 50 us,"
        f" {100 * sum(gaps) / seconds:.2f}% of the time lost;"
        f" a 0.2 ms call meets a 50 us gap {100 * long * 0.0002:.1f}% of the time",
    )


def figure(label: str, text: str) -> None:
    print(f"  {label:<38} {text}", flush=True)


def ratio_line(label: str, value: float, target: str, met: bool) -> None:
    """One `ratio` line with its verdict: what the smoke test and bench/README.md look for."""
    print(f"ratio {label}: {value:.3f}  target {target}  {'PASS' if met else 'MISS'}", flush=True)


def target_line(label: str, value: str, target: str, met: bool) -> None:
    print(f"target {label}: {value}  target {target}  {'PASS' if met else 'MISS'}", flush=True)


class Server:
    """`taskhub serve` in a subprocess on a free 127.0.0.1 port (gRPC only), stopped with SIGTERM."""

    def __init__(
        self,
        db: str | Path,
        *extra: str,
        log_level: str = "WARNING",
        launcher: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """`launcher`: a script run instead of `-m taskhub.server.cli` (it takes the same arguments)."""
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.workdir = tempfile.mkdtemp(prefix="taskhub-bench-")
        command = [
            sys.executable,
            *(["-m", "taskhub.server.cli"] if launcher is None else [launcher]),
            "serve",
            "--db",
            str(db),
            "--no-http",
            "--grpc-listen",
            self.target,
            "--log-level",
            log_level,
            "--snapshots-dir",
            f"{self.workdir}/snapshots",
            "--dumps-dir",
            f"{self.workdir}/dumps",
            *extra,
        ]
        self.process = subprocess.Popen(command, env=None if env is None else {**os.environ, **env})
        self.wait_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60) -> None:
        with grpc.insecure_channel(self.target) as channel:
            deadline = time.monotonic() + timeout
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.process.returncode}")
                try:
                    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def scratch_dir(keep: str | None = None) -> Iterator[Path]:
    """A temporary folder (or `keep`, created and left in place)."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix="taskhub-bench-") as tmp:
        yield Path(tmp)
