#!/usr/bin/env bash
# policy-cost.sh -- the proxy with policies and many routes, against its own plain figure and
# nginx, in one peers.sh run: columns "switchyard" (catch-all route only) and "sy-policy"
# (the same plus 1,000 other routes: 900 path prefixes and 100 host routes, none matching).
#
# Issue 5 asks for API-key auth + a rate limit that never trips as well. Neither is implemented
# in the proxy yet (a later issue); this script says so and measures only the route-count part.
# It prints no figure for auth or rate limiting.
#
#   bench/policy-cost.sh [proxy-vs-peers.sh / peers.sh options...]   (default: -t "nginx")
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
echo "[policy-cost] NOTE: API-key auth and rate limits are not available in the proxy yet;" \
     "measuring 1,000 extra routes only (no auth / rate-limit figures)." >&2
has_t=0
for a in "$@"; do [[ "$a" == -t ]] && has_t=1; done
if (( has_t )); then exec "$here/proxy-vs-peers.sh" --policy "$@"; fi
exec "$here/proxy-vs-peers.sh" --policy -t nginx "$@"
