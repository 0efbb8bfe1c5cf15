#!/usr/bin/env bash
# Builds Switchyard and runs a local control plane on the embedded SQLite store
# (./switchyard.db) plus one proxy, in the foreground; Ctrl-C stops both.
#   admin API  http://127.0.0.1:8080/api/v1/    xDS  127.0.0.1:18000
#   proxy      http://127.0.0.1:8000/           proxy admin  http://127.0.0.1:9901/
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin control-plane --bin proxy
target=${CARGO_TARGET_DIR:-target}/release
"$target/control-plane" &
cp_pid=$!
"$target/proxy" --node-id "${NODE_ID:-local-proxy}" &
proxy_pid=$!
stop() { kill -TERM "$proxy_pid" "$cp_pid" 2>/dev/null || true; wait "$proxy_pid" "$cp_pid" 2>/dev/null || true; }
trap stop EXIT INT TERM
echo "switchyard: control plane pid $cp_pid (admin http://127.0.0.1:8080), proxy pid $proxy_pid (http://127.0.0.1:8000)"
wait -n "$cp_pid" "$proxy_pid"
