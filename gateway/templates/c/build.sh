#!/usr/bin/env sh
# Builds {{name}}.wasm from the C sources. Needs clang-16, wasi-libc and
# libclang-rt-16-dev-wasm32 (Debian), and odoo-gateway for the last step.
set -eu
cd "$(dirname "$0")"
clang-16 --target=wasm32-wasi -O2 -std=c11 -Wall -Wextra -mexec-model=reactor -o {{name}}.core.wasm plugin.c json.c logic.c
odoo-gateway plugin componentize {{name}}.core.wasm -o {{name}}.wasm
