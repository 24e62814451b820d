#!/usr/bin/env sh
# Builds the component from app.py: ./build.sh [OUT.wasm] (needs componentize-py on the PATH).
set -eu
out=$(realpath -m "${1:-hostile_plugin_py.wasm}")
cd "$(dirname "$0")"
componentize-py --wit-path ../../wit --world plugin componentize app --output "$out"
