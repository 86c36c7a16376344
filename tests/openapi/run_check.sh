#!/usr/bin/env bash
# run_check.sh BASE_URL [--param k=v ...]: installs the pinned validator packages (package-lock.json)
# once into ~/.cache/outpost/openapi-check/<lock hash> (never into the repository), then runs
# check_openapi.mjs against the live server at BASE_URL.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
base=$1
shift
hash=$(sha256sum "$HERE/package-lock.json" | cut -c1-16)
dir="${OUTPOST_CACHE_DIR:-$HOME/.cache/outpost}/openapi-check/$hash"
if [[ ! -f "$dir/.installed" ]]; then
  mkdir -p "$dir"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$dir/"
  (cd "$dir" && timeout 300 npm ci --ignore-scripts --no-audit --no-fund >"$dir/npm.log" 2>&1) || {
    echo "npm ci of the OpenAPI validator failed (npm registry reachable?): $(tail -5 "$dir/npm.log")" >&2
    exit 1
  }
  touch "$dir/.installed"
fi
exec node "$HERE/check_openapi.mjs" --url "$base" --modules "$dir" "$@"
