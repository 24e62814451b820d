#!/usr/bin/env sh
# Builds {{name}}.wasm from plugin.js and logic.js. Needs Node.js 20+ and npm.
set -eu
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
npm run --silent build
