"""The table of `taskhub serve` flags in docs/configuration.md, made from `Config` and its help.

`python scripts/config_reference.py` rewrites the table between the markers in the page;
`--check` only says whether it is up to date (tests/test_config_reference.py runs that).
"""

from __future__ import annotations

import pathlib
import sys
from dataclasses import fields

from taskhub.server.config import HELP, Config, env_name

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN = "<!-- begin flags: made by scripts/config_reference.py -->"
END = "<!-- end flags -->"


def _default(field) -> str:
    if field.type == "bool":
        return "off"
    if field.default in (None, ""):
        return "none"
    value = field.default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        value = f"{value:,}"
    return f"`{value}`"


def table() -> str:
    rows = ["| flag | environment | default | what |", "|---|---|---|---|"]
    for field in fields(Config):
        flag = "--" + field.name.replace("_", "-")
        help_text = HELP[field.name].replace("|", "\\|")
        rows.append(f"| `{flag}` | `{env_name(field.name)}` | {_default(field)} | {help_text} |")
    return "\n".join(rows)


def render(page: str) -> str:
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    page = PAGE.read_text()
    fresh = render(page)
    if "--check" in argv:
        if fresh != page:
            print(f"{PAGE} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
