#!/usr/bin/env sh
# Builds the component from app.py, routing.py and the Python plugin SDK: ./build.sh [OUT.wasm]
# Needs componentize-py on the PATH (pip install componentize-py==0.25.1).
set -eu
out=$(realpath -m "${1:-shipper_router_py.wasm}")
cd "$(dirname "$0")"
componentize-py --wit-path ../../wit/v0.2 --world plugin componentize app -p . -p ../../plugin-sdk-py --output "$out"
