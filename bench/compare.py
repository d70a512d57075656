"""Two git revisions' bench figures side by side, from one run: end_to_end, get_task, list_tasks, memory.

    .venv/bin/python bench/compare.py                                  # a5d614e vs the working tree, small sizes
    .venv/bin/python bench/compare.py --only end_to_end,get_task --rounds 5
    .venv/bin/python bench/compare.py --size full --db-dir /tmp/taskhub-compare   # list_tasks, memory at 1M

The baseline is checked out with `git worktree add --detach` into a temporary folder (removed
at the end) and runs its own bench scripts with its own client/, server/ and gateway/ on
PYTHONPATH; the candidate is this working tree (or `--candidate REV`, checked out the same way).
Runs alternate between the two, A B then B A, `--rounds` times, so drift on a shared machine
and the first run's colder caches fall on both. Each script's figures are read off the lines
it prints through `harness` (the baseline's scripts have no other output), and the table gives
each figure's median over the rounds, the ratio candidate/baseline, and the spread: the larger
of the two sides' (max - min) / median. A figure is flagged better or worse when every run of
one side beats every run of the other (with 3 rounds each, chance alone does that to one
figure in ten; more rounds make a flag mean more).

The loaded databases (`tasks-N.db`) are shared by both revisions when their schemas (an empty
database from each one's `load_tasks.py`) are identical, and built once per revision otherwise;
`--db-dir` keeps them for the next run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

from compare_figures import PARSERS, Figure

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "a5d614e"  # the last commit before the server-core change (issue 20)

# Arguments per bench and size: tiny is the smoke test's, small each script's defaults, full the
# sizes bench/README.md's figures come from.
SIZES = {
    "tiny": {
        "end_to_end": ["--tasks", "100", "--workers", "2", "--timeout", "60"],
        "get_task": ["--tasks", "200", "--seconds", "0.2", "--rounds", "1", "--concurrency", "4"],
        "list_tasks": ["--tasks", "2000", "--seconds", "0.05", "--min-runs", "2"],
        "memory": ["--tasks", "2000", "--settle", "0.1"],
    },
    "small": {"end_to_end": [], "get_task": [], "list_tasks": [], "memory": []},
    "full": {
        "end_to_end": ["--tasks", "20000"],
        "get_task": ["--tasks", "1000000", "--seconds", "5", "--rounds", "3"],
        "list_tasks": ["--tasks", "1000000", "--seconds", "2"],
        "memory": ["--tasks", "1000000", "--default-cleanup"],
    },
}
# The scripts' own default --tasks, for those that load a database (`--db-dir`).
DEFAULT_TASKS = {"get_task": "10000", "list_tasks": "100000", "memory": "100000"}


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Side:
    """One revision: where its tree is, and the figures of its runs."""

    label: str
    short: str  # the table's column heading
    title: str
    root: Path
    db_dir: Path | None = None
    runs: dict[str, list[list[Figure]]] = field(default_factory=dict)
    failures: int = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(str(self.root / part) for part in ("client", "server", "gateway"))
        return env

    def python(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=self.root, env=self.env(), capture_output=True, text=True)


def checkout(stack: ExitStack, rev: str, label: str) -> Side:
    """`rev` in a detached worktree of its own, removed when `stack` closes."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    folder = Path(tempfile.mkdtemp(prefix=f"taskhub-compare-{label}-"))
    tree = folder / "tree"
    git("worktree", "add", "--detach", str(tree), sha)

    def remove() -> None:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)

    stack.callback(remove)
    return Side(label, sha[:7], f"{sha[:7]} {git('log', '-1', '--format=%s', sha)[:72]}", tree)


def working_tree() -> Side:
    head = git("rev-parse", "--short=7", "HEAD")
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return Side("candidate", "working tree", f"working tree {ROOT} ({head}{dirty})", ROOT)


def check_imports(side: Side) -> None:
    """The side's code is what its scripts import (PYTHONPATH ahead of the venv's editable install)."""
    probe = "import taskhub.server.cli as s, taskhub.v1.task_pb2 as v; print(s.__file__); print(v.__file__)"
    done = side.python("-c", probe)
    files = done.stdout.split()
    root = side.root.resolve()
    if done.returncode or len(files) != 2 or not all(Path(f).resolve().is_relative_to(root) for f in files):
        raise SystemExit(f"{side.label}: taskhub does not import from {side.root}:\n{done.stdout}{done.stderr}")


def schema_of(side: Side, scratch: Path) -> str:
    """A digest of the schema (tables, indexes, user_version) of a database from the side's own loader."""
    db = scratch / f"schema-{side.label}.db"
    done = side.python("bench/load_tasks.py", "--tasks", "10", "--db", str(db))
    if done.returncode:
        raise SystemExit(f"{side.label}: load_tasks.py failed:\n{done.stdout}{done.stderr}")
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return hashlib.sha256(repr((rows, version)).encode()).hexdigest()[:12]


def tasks_flag(args: list[str], bench: str) -> list[int]:
    """The --tasks sizes a bench's arguments ask for (the last --tasks wins, as in argparse)."""
    value = DEFAULT_TASKS[bench]
    for i, arg in enumerate(args[:-1]):
        if arg == "--tasks":
            value = args[i + 1]
    return [int(n) for n in value.split(",")]


def prepare_databases(sides: list[Side], sizes: set[int], db_root: Path, scratch: Path) -> None:
    """Gives each side a database folder by schema, and loads what is missing there with that side's loader."""
    for side in sides:
        side.db_dir = db_root / f"schema-{schema_of(side, scratch)}"
        side.db_dir.mkdir(parents=True, exist_ok=True)
        for tasks in sorted(sizes):
            db = side.db_dir / f"tasks-{tasks}.db"
            if db.exists():
                continue
            progress(f"loading {tasks:,} tasks into {db} ({side.label}'s loader) ...")
            partial = db.with_name(f"partial-{db.name}")  # a load cut short is not taken for a whole one
            for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
                leftover.unlink(missing_ok=True)
            done = side.python("bench/load_tasks.py", "--tasks", str(tasks), "--db", str(partial))
            if done.returncode:
                raise SystemExit(f"loading failed:\n{done.stdout}{done.stderr}")
            partial.rename(db)
    if len({side.db_dir for side in sides}) == 1:
        progress(f"both revisions have the same schema: one set of databases in {sides[0].db_dir}")
    else:
        progress("the schemas differ: each revision loads and reads its own databases")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_bench(side: Side, bench: str, args: list[str], verbose: bool) -> None:
    script = side.root / "bench" / f"{bench}.py"
    command = [str(script), *args]
    if bench in DEFAULT_TASKS:
        command += ["--db-dir", str(side.db_dir)]
    started = time.monotonic()
    done = side.python(*command)
    took = time.monotonic() - started
    figures = PARSERS[bench](done.stdout)
    if verbose:
        print(done.stdout, file=sys.stderr, flush=True)
    if done.returncode or not figures:
        side.failures += 1
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        progress(f"  {bench} {side.label}: exited {done.returncode}, {len(figures)} figures read\n{tail}")
        return
    side.runs.setdefault(bench, []).append(figures)
    progress(f"  {bench} {side.label}: {took:.1f}s")


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:#.3g}"  # 3 digits: list_tasks p50s are a few us


def row(bench: str, name: str, a: list[float], b: list[float], better: str | None) -> str:
    """One figure's line: both medians, their ratio, the spread, and a flag when the runs do not overlap."""
    ma, mb = (statistics.median(v) if v else None for v in (a, b))
    ratio = mb / ma if ma and mb is not None else None
    spreads = [(max(v) - min(v)) / statistics.median(v) for v in (a, b) if len(v) > 1 and statistics.median(v)]
    spread = max(spreads) if len(spreads) == 2 else None
    flag = ""
    if len(a) > 1 and len(b) > 1 and (min(b) > max(a) or max(b) < min(a)):
        higher = min(b) > max(a)
        flag = "differs" if better is None else "better" if higher == (better == "higher") else "worse"
    cells = [
        bench,
        name,
        fmt(ma) if ma is not None else "-",
        fmt(mb) if mb is not None else "-",
        f"{ratio:.3f}" if ratio is not None else "-",
        f"{100 * spread:.0f}%" if spread is not None else "-",
        flag,
    ]
    return f"| {' | '.join(cells)} |"


def table(benches: list[str], base: Side, cand: Side) -> list[str]:
    """The Markdown table, a row a figure in the order the scripts print them."""
    lines = [
        f"| bench | figure | baseline {base.short} | candidate {cand.short} | cand/base | spread | |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench in benches:
        values: dict[str, dict[str, list[float]]] = {}
        better: dict[str, str | None] = {}
        for side in (base, cand):
            for run in side.runs.get(bench, []):
                for fig in run:
                    values.setdefault(fig.name, {}).setdefault(side.label, []).append(fig.value)
                    better[fig.name] = fig.better
        for name, by_side in values.items():
            lines.append(row(bench, name, by_side.get(base.label, []), by_side.get(cand.label, []), better[name]))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help=f"git revision A (default {DEFAULT_BASELINE})")
    parser.add_argument("--candidate", help="git revision B (default: this working tree, as it is)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each bench per revision, interleaved")
    parser.add_argument("--only", default=",".join(PARSERS), help="comma-separated benches (default: all four)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small", help="small: the scripts' defaults")
    parser.add_argument("--db-dir", help="keep and reuse the loaded databases here (default: a temporary folder)")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="BENCH=ARGS",
        help="more arguments for one bench, after the size's: --extra 'list_tasks=--tasks 1000000,10000000'",
    )
    parser.add_argument("--verbose", action="store_true", help="echo every run's output to stderr")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    benches = [b for b in args.only.split(",") if b]
    unknown = set(benches) - set(PARSERS)
    if unknown:
        parser.error(f"unknown bench {', '.join(sorted(unknown))}; choose from {', '.join(PARSERS)}")
    bench_args = {bench: list(SIZES[args.size][bench]) for bench in benches}
    for extra in args.extra:
        bench, _, more = extra.partition("=")
        if bench not in bench_args:
            parser.error(f"--extra {extra!r}: {bench!r} is not among the benches run")
        bench_args[bench] += shlex.split(more)

    with ExitStack() as stack:
        base = checkout(stack, args.baseline, "baseline")
        cand = checkout(stack, args.candidate, "candidate") if args.candidate else working_tree()
        for side in (base, cand):
            check_imports(side)
            missing = [b for b in benches if not (side.root / "bench" / f"{b}.py").exists()]
            if missing:
                raise SystemExit(f"{side.label} ({side.title}) has no bench/{'.py, bench/'.join(missing)}.py")
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="taskhub-compare-")))
        sizes = {n for b in benches if b in DEFAULT_TASKS for n in tasks_flag(bench_args[b], b)}
        if sizes:
            db_root = Path(args.db_dir) if args.db_dir else scratch / "databases"
            prepare_databases([base, cand], sizes, db_root, scratch)
        for round_ in range(args.rounds):
            for bench in benches:
                progress(f"round {round_ + 1}/{args.rounds}: {bench}")
                # A B, then B A: whichever goes first meets the colder caches.
                for side in (base, cand) if round_ % 2 == 0 else (cand, base):
                    run_bench(side, bench, bench_args[bench], args.verbose)

    print(f"baseline:  {base.title}")
    print(f"candidate: {cand.title}")
    rounds = f"{args.rounds} round{'s' if args.rounds > 1 else ''}"
    print(f"{rounds} of each, alternating; medians; spread: the larger side's (max - min) / median")
    print("better/worse/differs: every run of one side beyond every run of the other")
    for bench in benches:
        print(f"  {bench}.py {shlex.join(bench_args[bench])}".rstrip())
    print()
    print("\n".join(table(benches, base, cand)))
    failures = base.failures + cand.failures
    if failures:
        print(f"\n{failures} run(s) failed; their figures are left out")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
