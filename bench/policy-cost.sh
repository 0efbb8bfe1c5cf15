#!/usr/bin/env bash
# policy-cost.sh -- the proxy with policies and many routes, against its own plain figure and
# nginx, in one peers.sh run: columns "switchyard" (catch-all route only) and "sy-policy"
# (the same route with API-key auth and a per-IP rate limit that never trips, plus 1,000 other
# routes: 900 path prefixes and 100 host routes, none matching). Every column's load
# generator sends the API key header, so all see the same requests.
#
#   bench/policy-cost.sh [proxy-vs-peers.sh / peers.sh options...]   (default: -t "nginx")
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
has_t=0
for a in "$@"; do [[ "$a" == -t ]] && has_t=1; done
if (( has_t )); then exec "$here/proxy-vs-peers.sh" --policy "$@"; fi
exec "$here/proxy-vs-peers.sh" --policy -t nginx "$@"
