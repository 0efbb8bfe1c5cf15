#!/usr/bin/env bash
# peers.sh extra column: Switchyard's proxy configured by a real control plane.
#
# peers.sh runs this with `taskset -c $PROXY_CPU bash -c 'exec .../switchyard.sh'` in a
# process group of its own and stops that group when the column is done. This script:
#   1. starts a control plane on a temporary SQLite database with random free loopback ports,
#      in a *separate* session watched by a tiny guard that stops it (by PID) as soon as the
#      proxy exits — so the control plane's CPU and RSS are not counted as the proxy's, and
#      under `-m instr` it is not run under valgrind (see VALGRIND_OPTS in proxy-vs-peers.sh);
#   2. configures over REST the same two-origin round-robin cluster as the peers
#      ($BENCH_ORIGIN1, $BENCH_ORIGIN2), a catch-all route, and SWITCHYARD_EXTRA_ROUTES other
#      routes (policy-cost mode: 1,000, none of which matches the benchmark path `/`); with
#      SWITCHYARD_POLICY=1 the catch-all route also requires an API key (`auth.api_key`) and
#      has a per-IP rate limit that never trips (10^9 requests per second);
#   3. `exec`s the proxy on $BENCH_LISTEN with RUST_LOG=warn (no per-request log line) and
#      `--workers 1` (one traffic thread, as peers.sh asks of every column; the control side
#      has a thread of its own, idle during the run). The proxy answers 200 on `/` only once it
#      holds the config, which is what peers.sh waits for before it sends load.
#
# Env: SWITCHYARD_BIN_DIR (default <repo>/target-bench/release), SWITCHYARD_EXTRA_ROUTES (0),
# SWITCHYARD_SEED_DB: a database already holding the extra routes, copied instead of writing
# them over REST (1,000 REST writes take longer than peers.sh waits for a column to answer).
# SWITCHYARD_MAKE_SEED=<db>: only write that seed database (placeholder cluster + the extra
# routes + consumer `bench` with one API key, written to `<db dir>/api-key`) and exit;
# proxy-vs-peers.sh does this once before the run and makes the load generator send the key.
set -euo pipefail
make_seed=${SWITCHYARD_MAKE_SEED:-}
if [[ -n "$make_seed" ]]; then
  BENCH_RUN_DIR=$(dirname "$make_seed") BENCH_ORIGIN1=127.0.0.1:1 BENCH_ORIGIN2=127.0.0.1:2 BENCH_LISTEN=-
fi
: "${BENCH_LISTEN:?run me from peers.sh}" "${BENCH_ORIGIN1:?}" "${BENCH_ORIGIN2:?}" "${BENCH_RUN_DIR:?}"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin_dir=${SWITCHYARD_BIN_DIR:-$here/../../target-bench/release}
extra_routes=${SWITCHYARD_EXTRA_ROUTES:-0}
[[ -x "$bin_dir/control-plane" && -x "$bin_dir/proxy" ]] \
  || { echo "switchyard column: no control-plane/proxy binaries in $bin_dir" >&2; exit 1; }

work="$BENCH_RUN_DIR/switchyard-$$"
mkdir -p "$work"
seeded=0
if [[ -n "$make_seed" ]]; then
  work=$(dirname "$make_seed")
elif [[ -n "${SWITCHYARD_SEED_DB:-}" ]]; then
  for suffix in "" -wal; do
    [[ -f "$SWITCHYARD_SEED_DB$suffix" ]] && cp "$SWITCHYARD_SEED_DB$suffix" "$work/cp.db$suffix"
  done
  seeded=1
fi

# A random free loopback port below the ephemeral range (so no client socket, e.g. curl's,
# takes it between the check and the bind); bash only: no helper process under valgrind.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    port_free "$p" && { echo "$p"; return 0; }
  done
  echo "switchyard column: no free port found" >&2; return 1
}
admin_port=$(free_port); xds_port=$(free_port)
while [[ "$xds_port" == "$admin_port" ]]; do xds_port=$(free_port); done
admin="http://127.0.0.1:$admin_port"
proxy_pid=$$   # `exec` below keeps this pid: it becomes the proxy's

# The control plane lives in its own session; its guard stops it when the proxy is gone.
setsid bash -c '
  "$1" --database-url "sqlite://$6" --admin-addr "127.0.0.1:$3" --xds-addr "127.0.0.1:$4" \
    > "$2/control-plane.log" 2>&1 < /dev/null &
  cp=$!
  echo "$cp" > "$2/control-plane.pid"
  trap "kill -TERM $cp 2>/dev/null; wait $cp" EXIT
  while kill -0 "$5" 2>/dev/null && kill -0 "$cp" 2>/dev/null; do sleep 0.5; done
' guard "$bin_dir/control-plane" "$work" "$admin_port" "$xds_port" "$proxy_pid" "${make_seed:-$work/cp.db}" \
  > /dev/null 2>&1 < /dev/null &

export RUST_LOG=warn
for i in $(seq 1 300); do
  curl -sf -o /dev/null --max-time 1 "$admin/healthz" && break
  (( i < 300 )) || { echo "switchyard column: control plane did not start" >&2; tail -5 "$work/control-plane.log" >&2; exit 1; }
  sleep 0.1
done

# One curl process for all writes (keep-alive; `next` separates requests, each of which
# carries its own options).
put_block() {  # put_block PATH JSON (JSON already escaped for a curl config string)
  printf 'url = "%s%s"\nrequest = "PUT"\nheader = "content-type: application/json"\n' "$admin" "$1"
  printf 'data = "%s"\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nsilent\nshow-error\nnext\n' "$2"
}
{
  put_block /api/v1/clusters/origins \
    "{\\\"lb_policy\\\": \\\"round_robin\\\", \\\"endpoints\\\": [{\\\"address\\\": \\\"$BENCH_ORIGIN1\\\"}, {\\\"address\\\": \\\"$BENCH_ORIGIN2\\\"}]}"
  for ((i = 0; i < extra_routes && !seeded; i++)); do
    # A realistic mix: most routes by path prefix, every 10th one for a host of its own.
    if (( i % 10 == 9 )); then
      match="{\\\"host\\\": \\\"svc-$i.example.com\\\"}"
    else
      match="{\\\"path_prefix\\\": \\\"/api/svc-$i/v1\\\"}"
    fi
    put_block "/api/v1/routes/svc-$i" "{\\\"match\\\": $match, \\\"cluster\\\": \\\"origins\\\"}"
  done
  policies=""
  if [[ "${SWITCHYARD_POLICY:-0}" == 1 ]]; then
    policies=", \\\"auth\\\": {\\\"api_key\\\": true}, \\\"rate_limit\\\": {\\\"requests\\\": 1000000000, \\\"per_seconds\\\": 1, \\\"by\\\": \\\"ip\\\"}"
  fi
  put_block /api/v1/routes/catch-all "{\\\"match\\\": {\\\"path_prefix\\\": \\\"/\\\"}, \\\"cluster\\\": \\\"origins\\\"$policies}"
} | sed '$d' > "$work/config.curl"   # drop the trailing `next`
curl -K "$work/config.curl" > "$work/config.status" 2> "$work/config.err" || true
expected=$(( seeded ? 2 : extra_routes + 2 ))
if grep -qvE '^20[01]$' "$work/config.status" || [[ $(wc -l < "$work/config.status") -ne $expected ]]; then
  echo "switchyard column: REST configuration failed (status counts below; see $work)" >&2
  sort "$work/config.status" | uniq -c >&2; cat "$work/config.err" >&2; exit 1
fi

if [[ -n "$make_seed" ]]; then
  # The consumer the policy column's load generator authenticates as; its key is shown once.
  curl -sf -o /dev/null -X PUT -H 'content-type: application/json' -d '{"name": "bench"}' \
    "$admin/api/v1/consumers/bench"
  curl -sf -X POST -H 'content-type: application/json' -d '{}' "$admin/api/v1/consumers/bench/keys" \
    | grep -o '"key": *"sy_[^"]*"' | sed 's/.*"\(sy_[^"]*\)"/\1/' > "$work/api-key"
  [[ -s "$work/api-key" ]] || { echo "switchyard column: could not create the bench API key" >&2; exit 1; }
  # Stop the control plane (by PID) so the database is complete.
  cp_pid=$(cat "$work/control-plane.pid")
  kill -TERM "$cp_pid"
  for _ in $(seq 1 100); do kill -0 "$cp_pid" 2>/dev/null || exit 0; sleep 0.1; done
  echo "switchyard column: seed control plane did not stop" >&2; exit 1
fi

proxy_admin_port=$(free_port)
exec "$bin_dir/proxy" --control-plane "http://127.0.0.1:$xds_port" --listen "$BENCH_LISTEN" \
  --admin-addr "127.0.0.1:$proxy_admin_port" --node-id "bench-$$" --workers 1
