#!/usr/bin/env bash
# Sets up what the tests need (a .venv with the test and bench extras, buf and the JS SDK from npm) and
# runs every check CI runs: buf lint/format, generated-code drift, pytest.
# Extra arguments go to pytest: `scripts/test.sh -k watch -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'

npm install --prefix tools --no-audit --no-fund --loglevel=error
# The official Meilisearch JS SDK, driven against the gateway by tests/test_gateway_sdk.py.
npm install --prefix tests/node --no-audit --no-fund --loglevel=error
buf=tools/node_modules/.bin/buf
"$buf" lint
"$buf" format --diff --exit-code
.venv/bin/python scripts/generate_protos.py --check
.venv/bin/ruff check --quiet .

exec .venv/bin/python -m pytest "$@"
