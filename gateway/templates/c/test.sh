#!/usr/bin/env sh
# Builds the plugin and runs it on the sample event: one delivery above the minimum, none below.
set -eu
cd "$(dirname "$0")"
./build.sh
odoo-gateway plugin run {{name}}.wasm --event sample-event.json --config min_amount_total=100 | grep -q '^handle: 1 deliveries'
odoo-gateway plugin run {{name}}.wasm --event sample-event.json --config min_amount_total=5000 | grep -q '^handle: 0 deliveries'
echo "test passed"
