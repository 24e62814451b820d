#!/usr/bin/env sh
# Builds the component from the C sources: ./build.sh [OUT.wasm]
# Needs clang-16, wasi-libc and libclang-rt-16-dev-wasm32 (Debian), and a componentizer:
# `odoo-gateway plugin componentize` (set COMPONENTIZE to use another command line).
set -eu
out=$(realpath -m "${1:-shipper_router_c.wasm}")
cd "$(dirname "$0")"
mkdir -p build
clang-16 --target=wasm32-wasi -O2 -std=c11 -Wall -Wextra -Werror -mexec-model=reactor \
  -o build/shipper_router_c.core.wasm plugin.c json.c router.c
# plugin.c is the glue of world 0.2.0: named, so that it does not depend on what the imports say.
${COMPONENTIZE:-odoo-gateway plugin componentize} build/shipper_router_c.core.wasm -o "$out" --world 0.2.0
