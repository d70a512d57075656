"""Generates the Python stubs under client/taskhub/v1 from protos/.

The one way generated code is made: `python scripts/generate_protos.py`.
CI runs it with `--check`, which fails if the committed stubs differ from
what the protos produce, so generated code never drifts.
"""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "client"
PACKAGE = pathlib.Path("taskhub") / "v1"
INIT = '"""Generated gRPC stubs for taskhub.v1; made by scripts/generate_protos.py."""\n'


def generate(out: pathlib.Path) -> None:
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    # protoc ships the well-known types (timestamp, struct, ...) with grpc_tools.
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / PACKAGE).glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out / PACKAGE / "__init__.py").write_text(INIT)


def differences(left: pathlib.Path, right: pathlib.Path) -> list[str]:
    names = {p.name for p in left.glob("*.py*")} | {p.name for p in right.glob("*.py*")}
    return sorted(
        n
        for n in names
        if not (left / n).exists() or not (right / n).exists() or not filecmp.cmp(left / n, right / n, shallow=False)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args()
    if not args.check:
        shutil.rmtree(OUT / PACKAGE, ignore_errors=True)
        generate(OUT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(pathlib.Path(tmp))
        stale = differences(pathlib.Path(tmp) / PACKAGE, OUT / PACKAGE)
    if stale:
        print("generated stubs are stale; run scripts/generate_protos.py:", *stale, sep="\n  ")
        return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
