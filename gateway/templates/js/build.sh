#!/usr/bin/env sh
# Builds {{name}}.wasm from plugin.js, logic.js and odoo-gateway.js with componentize-js: the one
# in node_modules (npm install, pinned in package.json), else one on the PATH.
set -eu
cd "$(dirname "$0")"
if [ -x node_modules/.bin/componentize-js ]; then
  componentize=node_modules/.bin/componentize-js
elif command -v componentize-js >/dev/null 2>&1; then
  componentize=componentize-js
elif command -v npm >/dev/null 2>&1; then
  npm install --no-audit --no-fund --loglevel=error
  componentize=node_modules/.bin/componentize-js
else
  echo "build.sh: needs Node.js 20 or later with npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
# No `fetch`: the gateway gives plugins no network, and so no wasi:http to import.
"$componentize" plugin.js --wit wit --world-name plugin --disable http fetch-event -o {{name}}.wasm
