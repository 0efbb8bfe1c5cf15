#!/usr/bin/env bash
# Runs every test of the workspace: unit, store (SQLite and PostgreSQL), REST, xDS protocol,
# proxy and end-to-end tests. Starts the local PostgreSQL first if it is down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
