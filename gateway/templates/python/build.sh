#!/usr/bin/env sh
# Builds {{name}}.wasm from app.py and logic.py. Needs componentize-py on the PATH.
set -eu
cd "$(dirname "$0")"
componentize-py --wit-path wit --world plugin componentize app --output {{name}}.wasm
