"""What a user installs: every npm folder's lockfile is complete and committed, so `npm ci` (what
scripts/test.sh runs) installs it as locked and running the tests rewrites no tracked file.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NPM_FOLDERS = ["tools", "tests/node", "tests/browser", "tests/ts", "examples/node"]

npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")


def test_every_npm_folder_is_listed():
    found = {str(p.parent.relative_to(ROOT)) for p in ROOT.glob("*/**/package.json") if "node_modules" not in p.parts}
    assert found == set(NPM_FOLDERS)


@npm
@pytest.mark.parametrize("folder", NPM_FOLDERS)
def test_lockfile_is_committed_and_complete(folder, tmp_path):
    """npm resolving package.json again writes exactly the committed lockfile."""
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", f"{folder}/package-lock.json"], cwd=ROOT,
                             capture_output=True, text=True)
    assert tracked.returncode == 0, tracked.stderr
    for name in ("package.json", "package-lock.json"):
        shutil.copy(ROOT / folder / name, tmp_path / name)
    subprocess.run(["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit", "--no-fund",
                    "--loglevel=error"], cwd=tmp_path, check=True, timeout=300, capture_output=True)
    assert json.loads((tmp_path / "package-lock.json").read_text()) == json.loads(
        (ROOT / folder / "package-lock.json").read_text())
