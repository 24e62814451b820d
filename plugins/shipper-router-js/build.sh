#!/usr/bin/env sh
# Builds the component from plugin.js, routing.js and the JavaScript plugin SDK: ./build.sh [OUT.wasm]
# Needs Node.js 20 or later with npm; installs componentize-js from package-lock.json first.
set -eu
out=$(realpath -m "${1:-shipper_router_js.wasm}")
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm ci --no-audit --no-fund --loglevel=error
# From the repository's root: componentize-js reads modules from under the working directory
# only, and plugin.js imports the SDK from ../../plugin-sdk-js.
cd ../..
# No `fetch`: the gateway gives plugins no network, and so no wasi:http to import.
plugins/shipper-router-js/node_modules/.bin/componentize-js plugins/shipper-router-js/plugin.js \
  --wit wit/v0.2 --world-name plugin --disable http fetch-event --out "$out"
