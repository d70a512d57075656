#!/usr/bin/env bash
# Sets up what the tests need (a .venv with the test and bench extras; buf, the JS SDK, playwright-core and the
# TypeScript stub tools from npm; Debian's chromium) and runs every check CI runs: buf lint/format/breaking,
# generated-code drift, ruff, import-linter, mypy, pytest.
# Extra arguments go to pytest: `scripts/test.sh -k watch -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'

# `npm ci` installs exactly the committed lockfile and never rewrites it (tests/test_packaging.py checks that
# each lockfile is complete). It starts node_modules afresh, so it runs only when the lockfile changed since.
npm_ci() {
  if ! cmp -s "$1/package-lock.json" "$1/node_modules/.installed-lock.json"; then
    npm ci --prefix "$1" --no-audit --no-fund --loglevel=error
    cp "$1/package-lock.json" "$1/node_modules/.installed-lock.json"
  fi
}
npm_ci tools
# The official Meilisearch JS SDK, driven against the gateway by tests/test_gateway_sdk.py.
npm_ci tests/node
# The dashboard's browser test (tests/test_dashboard_browser.py): playwright-core from npm drives Debian's
# chromium (playwright cannot download browsers here). apt-get only when chromium is missing and we are
# root or have sudo; without it the test skips, saying why (and fails under CI, where it must run).
npm_ci tests/browser
# TypeScript stubs from buf.gen.yaml (protoc-gen-es), compiled and run against a server by tests/test_ts_stubs.py.
npm_ci tests/ts
# A Debian package the tests need, with apt-get, only as root or with sudo; otherwise the tests that need it skip,
# saying why (and fail under CI, where they must run). $1: the package; $2: what needs it.
apt_install() {
  local as_root=(false)
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  fi
  if [ "${as_root[0]:-}" != false ] && command -v apt-get >/dev/null; then
    echo "installing $1 (apt-get) for $2" >&2
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else
    echo "no $1 and no root or sudo to install it: $2 will skip" >&2
  fi
}
[ -x "${TASKHUB_CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium "the dashboard's browser test"
# PostgreSQL for the storage contract's suite and the queue's tests on PostgreSQL: each test session makes a
# throwaway cluster (tests/postgres_cluster.py).
if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt_install postgresql "the PostgreSQL tests"
fi
buf=tools/node_modules/.bin/buf
"$buf" lint
"$buf" format --diff --exit-code
# No wire-breaking change to the protos against the baseline commit named in protos/BREAKING_BASELINE (a commit on
# main; CI clones with full history, so it is there). docs/grpc.md says how to move the baseline on purpose.
"$buf" breaking --against ".git#ref=$(cat protos/BREAKING_BASELINE),subdir=protos"
.venv/bin/python scripts/generate_protos.py --check
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
# The import contracts in pyproject.toml ([tool.importlinter]): gateway and client never import the server.
# Quiet when all are kept; when one breaks, the second run prints the offending import chains and fails.
.venv/bin/lint-imports --no-logo >/dev/null || .venv/bin/lint-imports --no-logo
# Type checks ([tool.mypy] in pyproject.toml) over the whole server, the rules and the storage contract under
# --strict's flags; mypy reads what the server imports (client, gateway) for its types.
.venv/bin/mypy --no-error-summary server/taskhub/server

.venv/bin/python -m pytest "$@"

# The queue's tests once more with the plain-SQL finder (--task-index sql) in place of the in-memory index:
# both must answer the same suite. Exit status 5 is "nothing selected" (a narrowing -k or -m).
status=0
TASKHUB_TEST_TASK_INDEX=sql .venv/bin/python -m pytest "$@" \
  tests/test_queue_rules.py tests/test_worker_service.py tests/test_task_service.py tests/test_list_tasks.py \
  tests/test_gateway_filters.py tests/test_gateway_tasks.py tests/test_watch_tasks.py tests/test_full_and_cleanup.py \
  tests/test_old_data.py tests/test_auth.py tests/test_requeue.py tests/test_metrics.py || status=$?
[ "$status" = 0 ] || [ "$status" = 5 ] || exit "$status"

# Every test whose server stands on the `config` fixture's database once more on PostgreSQL (a fresh database a test
# in a throwaway cluster; tests/conftest.py selects them, less those marked `sqlite_only`, about SQLite itself): the
# rules must answer the same on both stores. Each pass's summary says how many tests ran on each database.
status=0
TASKHUB_TEST_DB=postgres .venv/bin/python -m pytest "$@" tests || status=$?
[ "$status" = 0 ] || [ "$status" = 5 ] || exit "$status"
