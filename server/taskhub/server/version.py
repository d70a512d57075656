"""Which taskhub this server is: its package version and, when it can tell, the commit it runs from.

`GetVersion` (and so `GET /version`) answers these. The package version is the installed
`taskhub` distribution's. A commit is claimed only when it is certain:

- the server's own code is tracked in a git checkout (a clone run in place, an editable
  install): that checkout's HEAD and its committer date. Uncommitted changes are not shown,
  as Meilisearch's own build information does not show them;
- else the distribution was installed from a VCS URL (`pip install git+https://...@ref`), which
  pip records (PEP 610): that commit, its date unknown;
- else (a wheel from an index, an sdist) no commit and no date: unknown, which the gateway
  answers as Meilisearch does for a build without git information, `"unknown"`.

It is read once per process, at the first server start, close to when the code was loaded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
from dataclasses import dataclass

DISTRIBUTION = "taskhub"
# git answers in milliseconds; a hung one (a network file system) must not hold a start up.
GIT_TIMEOUT = 5.0
# A git commit id: SHA-1, or SHA-256 in a repository made with it.
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """The package version and the commit, each None when unknown; `commit_time` in microseconds."""

    package_version: str | None
    commit_sha: str | None
    commit_time: int | None


@functools.cache
def this_server() -> BuildInfo:
    """This process's `BuildInfo`, found once."""
    return build_info(pathlib.Path(__file__))


def build_info(module: pathlib.Path) -> BuildInfo:
    """The `BuildInfo` of the code at `module`, a file of the server package."""
    version = _package_version()
    found = _checkout_commit(module)
    if found is not None:
        return BuildInfo(version, *found)
    return BuildInfo(version, _installed_commit(), None)


def _package_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(folder: pathlib.Path, *args: str) -> str | None:
    """git's output in `folder`, or None when git is missing, fails or hangs."""
    # GIT_DIR and friends (set when this runs under a git hook) would point git at another repository.
    env = {name: value for name, value in os.environ.items() if not name.startswith("GIT_")}
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _checkout_commit(module: pathlib.Path) -> tuple[str, int] | None:
    """HEAD and its committer date when `module` is tracked by the checkout around it.

    Tracked, not merely inside: a virtualenv within some project's checkout holds an installed
    package whose files that checkout ignores, and its HEAD says nothing about them.
    """
    folder = module.parent
    if _git(folder, "ls-files", "--error-unmatch", "--", module.name) is None:
        return None
    head = _git(folder, "show", "-s", "--format=%H %ct", "HEAD")
    if head is None:
        return None
    sha, _, seconds = head.partition(" ")
    if not _COMMIT.fullmatch(sha) or not seconds.isdigit():
        return None
    return sha, int(seconds) * 1_000_000


def _installed_commit() -> str | None:
    """The commit pip installed the distribution from, as its `direct_url.json` records it (PEP 610)."""
    try:
        text = importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        commit = json.loads(text or "{}").get("vcs_info", {}).get("commit_id")
    except (importlib.metadata.PackageNotFoundError, ValueError, AttributeError):
        return None
    # Only a git commit id: the document promises one (other VCSs record other kinds of revision).
    return commit if isinstance(commit, str) and _COMMIT.fullmatch(commit) else None
