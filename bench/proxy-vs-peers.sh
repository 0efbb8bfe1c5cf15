#!/usr/bin/env bash
# proxy-vs-peers.sh -- Switchyard's proxy next to nginx and HAProxy, in one run of
# ../shared/bench/peers.sh (same machine, same origins, same load generator, interleaved).
#
#   bench/proxy-vs-peers.sh [--policy] [--no-build] [--no-install] [PEERS.SH OPTIONS...]
#
# Installs what is missing (nginx, haproxy, wrk, valgrind from apt; oha with cargo, only for the
# modes that need it), builds the release `proxy` and `control-plane` into
# $CARGO_TARGET_DIR (default <repo>/target-bench), and runs peers.sh with Switchyard as an
# extra column (bench/columns/switchyard.sh: control plane on a temp SQLite db, the same
# two-origin round-robin cluster, a catch-all route, proxy exec'd with one traffic worker).
#
#   --policy     also add the column "sy-policy": the same proxy with 1,000 other routes
#                configured and API-key auth + a per-IP rate limit that never trips on the
#                benchmarked route; every column's load generator then sends the API key.
#   -q half-nginx  (rate mode) first measure throughput, then run the fixed-rate mode at half
#                of nginx's median saturation rate from that same run.
#   --no-build / --no-install  skip those steps.
# Every other option goes to peers.sh unchanged (-m MODE, -d SECS, -r ROUNDS, -c CONNS, -t LIST,
# -q RATE, -o DIR, ...; `peers.sh -h` lists them). Results land in bench/.run/<time>-peers/
# unless -o is given; the summary is printed at the end and kept in summary.md there.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=${PEERS_SH:-$ROOT/../shared/bench/peers.sh}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-bench}
SWITCHYARD_PORT=${SWITCHYARD_PORT:-$(( ${BASE_PORT:-18080} + 110 ))}

policy=0 build=1 install=1 mode=${MODE:-throughput} rate="" out="" pass=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --policy) policy=1; shift ;;
    --no-build) build=0; shift ;;
    --no-install) install=0; shift ;;
    -m) mode=$2; shift 2 ;;
    -q) rate=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$1"); [[ $# -gt 1 && "$1" == -* ]] && { pass+=("$2"); shift; }; shift ;;
  esac
done
[[ -x "$PEERS" ]] || { echo "peers.sh not found at $PEERS (set PEERS_SH)" >&2; exit 1; }

say() { echo "[proxy-vs-peers] $*" >&2; }

# ---------------------------------------------------------------- tools
apt_install() {  # apt_install PKG... : apt-get update only when the plain install fails
  local missing=() p
  for p in "$@"; do command -v "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} -gt 0 ]] || return 0
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
}
OHA=${OHA:-}
find_oha() {
  if [[ -z "$OHA" ]]; then
    if [[ -x "$HERE/.tools/bin/oha" ]]; then OHA="$HERE/.tools/bin/oha"
    elif command -v oha >/dev/null 2>&1; then OHA=$(command -v oha); fi
  fi
  [[ -n "$OHA" ]]
}
if (( install )); then
  apt_install nginx haproxy wrk valgrind
  command -v callgrind_control >/dev/null || apt_install valgrind
  if [[ "$mode" != throughput ]] && ! find_oha; then
    say "oha is needed for -m $mode; cargo install oha --locked (a few minutes)"
    cargo install oha --locked --root "$HERE/.tools" >&2 || true
  fi
fi
if [[ "$mode" != throughput ]] && ! find_oha; then
  if [[ "$mode" == both ]]; then
    say "oha is unavailable: running throughput mode only (fixed-rate mode skipped)"; mode=throughput
  else
    say "oha is unavailable: -m $mode cannot run (cargo install oha --locked --root $HERE/.tools)"; exit 1
  fi
fi
[[ -n "$OHA" ]] && export OHA

# ---------------------------------------------------------------- build
if (( build )); then
  say "building release proxy and control-plane into $CARGO_TARGET_DIR"
  (cd "$ROOT" && cargo build --release --quiet -p proxy -p control-plane)
fi
export SWITCHYARD_BIN_DIR="$CARGO_TARGET_DIR/release"

# ---------------------------------------------------------------- columns
# Under -m instr the column runs under valgrind with --trace-children=yes; the control plane
# (started through setsid) and the REST calls (curl) must not be, nor be counted.
export VALGRIND_OPTS="${VALGRIND_OPTS:-} --trace-children-skip=*/setsid,*/curl,*/sleep,*/seq,*/sed,*/grep,*/wc,*/sort,*/mkdir,*/dirname"
extras=(-x "switchyard:$SWITCHYARD_PORT:exec '$HERE/columns/switchyard.sh'")
if (( policy )); then
  seed="$HERE/.run/seed-$(date +%Y%m%d-%H%M%S)-$$/seed.db"
  mkdir -p "$(dirname "$seed")"
  say "writing the seed database $seed (1,000 routes, consumer 'bench' with an API key)"
  SWITCHYARD_MAKE_SEED="$seed" SWITCHYARD_EXTRA_ROUTES=1000 "$HERE/columns/switchyard.sh"
  extras+=(-x "sy-policy:$((SWITCHYARD_PORT + 1)):SWITCHYARD_POLICY=1 SWITCHYARD_EXTRA_ROUTES=1000 SWITCHYARD_SEED_DB='$seed' exec '$HERE/columns/switchyard.sh'")
  # peers.sh's load generators send no custom header; wrappers add the API key to every
  # request of every column (the others forward it like any header), so all columns see the
  # same request.
  key=$(cat "$(dirname "$seed")/api-key")
  wrk_bin=$(command -v "${WRK:-wrk}")
  for tool in wrk oha; do
    real=$wrk_bin; [[ $tool == oha ]] && real=${OHA:-}
    [[ -n "$real" ]] || continue
    printf '#!/bin/sh\nexec %q -H %q "$@"\n' "$real" "x-api-key: $key" > "$(dirname "$seed")/$tool"
    chmod +x "$(dirname "$seed")/$tool"
  done
  export WRK="$(dirname "$seed")/wrk"
  [[ -n "${OHA:-}" ]] && export OHA="$(dirname "$seed")/oha"
  # peers.sh's own readiness and origin checks use curl: give it the key too (.curlrc).
  printf 'header = "x-api-key: %s"\n' "$key" > "$(dirname "$seed")/.curlrc"
  export CURL_HOME="$(dirname "$seed")"
  say "policy column: API-key auth + a per-IP rate limit that never trips on the catch-all route"
fi

stamp=$(date +%Y%m%d-%H%M%S)
run_peers() {  # run_peers MODE OUT_DIR [RATE]
  local args=(-m "$1" -o "$2" "${pass[@]+"${pass[@]}"}" "${extras[@]}")
  [[ -n "${3:-}" ]] && args+=(-q "$3")
  say "peers.sh ${args[*]}"
  "$PEERS" "${args[@]}"
}

if [[ "$rate" == half-nginx ]]; then
  [[ "$mode" == rate || "$mode" == both ]] || { say "-q half-nginx needs -m rate or -m both"; exit 2; }
  base=${out:-$HERE/.run/$stamp-peers}
  run_peers throughput "$base/throughput"
  nginx_rps=$(awk -F'\t' '$1 == "throughput" && $2 == "nginx" {print $5}' "$base/throughput/samples.tsv" \
              | sort -n | awk '{v[NR]=$1} END {if (NR) print int((NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2) / 2)}')
  [[ -n "$nginx_rps" && "$nginx_rps" -gt 0 ]] || { say "no nginx throughput figure; cannot derive the rate"; exit 1; }
  say "fixed rate = half of nginx's saturation rate = $nginx_rps req/s"
  run_peers rate "$base/rate" "$nginx_rps"
else
  run_peers "$mode" "${out:-$HERE/.run/$stamp-peers}" "$rate"
fi
