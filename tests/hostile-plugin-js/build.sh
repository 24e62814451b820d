#!/usr/bin/env sh
# Builds the component from plugin.js: ./build.sh [OUT.wasm]. Uses the componentize-js that
# plugins/shipper-router-js installs (npm ci there).
set -eu
out=$(realpath -m "${1:-hostile_plugin_js.wasm}")
cd "$(dirname "$0")"
js=../../plugins/shipper-router-js
[ -x "$js/node_modules/.bin/componentize-js" ] || (cd "$js" && npm ci --no-audit --no-fund --loglevel=error)
"$js/node_modules/.bin/componentize-js" plugin.js --wit ../../wit --world-name plugin --disable http fetch-event --out "$out"
