#!/usr/bin/env sh
# Builds the component from plugin.js and routing.js: ./build.sh [OUT.wasm]
# Needs Node.js 20 or later with npm; installs componentize-js from package-lock.json first.
set -eu
out=$(realpath -m "${1:-shipper_router_js.wasm}")
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm ci --no-audit --no-fund --loglevel=error
# No `fetch`: the gateway gives plugins no network, and so no wasi:http to import.
node_modules/.bin/componentize-js plugin.js --wit ../../wit --world-name plugin --disable http fetch-event --out "$out"
