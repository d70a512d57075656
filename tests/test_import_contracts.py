"""The import contracts in pyproject.toml (checked by `lint-imports` in scripts/test.sh) name every module.

A forbidden contract checks only the source modules it lists: a new module in client/taskhub left out of the
list could import the server unseen. This keeps the list equal to what the client distribution ships.
"""

from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def contract(name_start: str) -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [found] = [c for c in config["contracts"] if c["name"].startswith(name_start)]
    return found


def client_modules() -> set[str]:
    top = ROOT / "client" / "taskhub"
    return {f"taskhub.{p.stem}" for p in top.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}


def test_the_no_server_contract_covers_the_whole_client_and_the_gateway():
    sources = set(contract("The gateway and the client")["source_modules"])
    assert sources == client_modules() | {"taskhub.gateway"}


def test_the_no_gateway_contract_covers_the_whole_client():
    assert set(contract("The client distribution")["source_modules"]) == client_modules()
