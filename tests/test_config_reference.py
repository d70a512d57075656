"""docs/configuration.md lists every `taskhub serve` flag, as `Config` and its help say today."""

from __future__ import annotations

import pathlib
import runpy
import subprocess
import sys
from dataclasses import fields

from taskhub.server.config import Config, env_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"


def test_every_config_field_has_a_row_with_its_flag_and_variable():
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `--")]
    for field in fields(Config):
        flag = "--" + field.name.replace("_", "-")
        row = [line for line in rows if line.startswith(f"| `{flag}` |")]
        assert len(row) == 1, f"{flag} has {len(row)} rows in {PAGE}"
        assert f"`{env_name(field.name)}`" in row[0]
    assert len(rows) == len(fields(Config)), "the table lists a flag Config no longer has"


def test_the_table_is_what_the_script_makes_from_config():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_the_check_fails_on_a_stale_table():
    script = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"))
    stale = PAGE.read_text().replace("| `--tls-key` |", "| `--tls-keyfile` |")
    assert script["render"](stale) != stale
    assert script["render"](PAGE.read_text()) == PAGE.read_text()
