#!/usr/bin/env bash
# Makes sure the local PostgreSQL the tests use (127.0.0.1:5432, user postgres) is up.
# Starts the machine's cluster if it is down; does nothing if it already answers.
set -euo pipefail
url=${SWITCHYARD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}
ready() { pg_isready -q -d "$url" 2>/dev/null; }
ready && exit 0
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
for _ in $(seq 1 60); do ready && exit 0; sleep 0.5; done
echo "PostgreSQL at $url is not reachable; the PostgreSQL tests need it" >&2
exit 1
